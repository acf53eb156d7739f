//! Named clients (SPEC §13): the tokens file (`NAME TOKEN [rpd=N] [tpd=N] [models=P|P] [admin]`),
//! who a presented credential is, each client's budget and model patterns, and its books (today's
//! requests and tokens per model, 30 days of daily totals).
//!
//! Parsing and the books are pure (`now` is a parameter); `load` is the only place that reads the
//! tokens file. A token never leaves this module except into the redactor: a `Client` keeps only
//! the SHA-256 of its token, errors name line numbers, and `Debug` shows the name.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::ProxyError;
use crate::router::Presented;
use crate::store_format::{DayTotals, NO_MODEL, UsageFile};

/// Days of daily totals kept per client (as the pool keeps per key).
pub const HISTORY_DAYS: i64 = 30;

/// One line of the tokens file. The token itself is kept only as its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct Client {
    pub name: String,
    digest: [u8; 32],
    /// Requests per quota day over all models.
    pub rpd: Option<u64>,
    /// Tokens per quota day over all models.
    pub tpd: Option<u64>,
    /// `*` globs of the models it may use; empty: every model.
    pub models: Vec<String>,
    /// May read `/status`, `/metrics`, `/dashboard` and use `/admin/**`.
    pub admin: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("rpd", &self.rpd)
            .field("tpd", &self.tpd)
            .field("models", &self.models)
            .field("admin", &self.admin)
            .finish()
    }
}

impl Client {
    /// May this client use `model` (the Gemini model the request goes to)?
    pub fn allows(&self, model: &str) -> bool {
        let model = model.strip_prefix("models/").unwrap_or(model);
        self.models.is_empty() || self.models.iter().any(|p| crate::alias::glob(p, model))
    }
}

/// The clients of a tokens file and the tokens to register with the redactor.
#[derive(Debug, Default)]
pub struct Parsed {
    pub clients: Vec<Client>,
    pub tokens: Vec<String>,
}

/// The SHA-256 of a secret: what tokens are compared by (in constant time, whatever their length).
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parse tokens-file text; every problem is reported (line numbers, never a token).
pub fn parse(text: &str) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start_matches('\u{feff}').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = n + 1;
        let mut fields = line.split_whitespace().take_while(|f| !f.starts_with('#'));
        let (Some(name), Some(token)) = (fields.next(), fields.next()) else {
            errors.push(format!("line {n}: expected NAME TOKEN [rpd=N] [tpd=N] [models=P|P] [admin]"));
            continue;
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            errors.push(format!("line {n}: a client name is letters, digits, '-', '_' and '.' only"));
            continue;
        }
        let mut client = Client {
            name: name.to_string(),
            digest: digest(token),
            rpd: None,
            tpd: None,
            models: Vec::new(),
            admin: false,
        };
        for field in fields {
            let (k, v) = field.split_once('=').unwrap_or((field, ""));
            let number =
                |v: &str| v.parse::<u64>().map_err(|_| format!("line {n}: {k}={v} is not a whole number"));
            match k {
                "rpd" => match number(v) {
                    Ok(v) => client.rpd = Some(v),
                    Err(e) => errors.push(e),
                },
                "tpd" => match number(v) {
                    Ok(v) => client.tpd = Some(v),
                    Err(e) => errors.push(e),
                },
                "models" if !v.is_empty() => {
                    client.models = v.split('|').filter(|p| !p.is_empty()).map(str::to_string).collect()
                }
                "admin" if v.is_empty() => client.admin = true,
                _ => errors.push(format!("line {n}: unknown field '{k}' (rpd=, tpd=, models=, admin)")),
            }
        }
        if out.clients.iter().any(|c| c.name == client.name) {
            errors.push(format!("line {n}: the name {name} is already taken"));
            continue;
        }
        if out.clients.iter().any(|c| c.digest == client.digest) {
            errors.push(format!("line {n}: this token is already the token of another client"));
            continue;
        }
        out.tokens.push(token.to_string());
        out.clients.push(client);
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    if out.clients.is_empty() {
        return Err("no client (one NAME TOKEN per line; # starts a comment)".into());
    }
    Ok(out)
}

/// Read and parse the tokens file.
pub fn load(path: &Path) -> Result<Parsed, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read tokens file {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("tokens file {}: {e}", path.display()))
}

/// One client's day: requests and tokens per model.
type Day = BTreeMap<String, DayTotals>;

/// What each client used: today per model, past days in total, requests in flight (which count
/// against `rpd` so that concurrent requests cannot overshoot it), and refusals by reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Books {
    day: Option<NaiveDate>,
    today: BTreeMap<String, Day>,
    history: BTreeMap<NaiveDate, BTreeMap<String, DayTotals>>,
    pending: BTreeMap<String, u64>,
    refused: BTreeMap<(String, &'static str), u64>,
}

impl Books {
    /// Move the counts of a past day into history (kept [`HISTORY_DAYS`]).
    pub fn roll(&mut self, day: NaiveDate) {
        match self.day {
            Some(d) if d == day => return,
            Some(d) if d < day => {
                let totals: BTreeMap<String, DayTotals> = std::mem::take(&mut self.today)
                    .into_iter()
                    .map(|(name, models)| {
                        let mut t = DayTotals::default();
                        models.values().for_each(|m| t.add(*m));
                        (name, t)
                    })
                    .filter(|(_, t)| !t.is_zero())
                    .collect();
                if !totals.is_empty() {
                    let entry = self.history.entry(d).or_default();
                    for (name, t) in totals {
                        entry.entry(name).or_default().add(t);
                    }
                }
            }
            _ => {}
        }
        self.day = Some(day);
        let oldest = day - chrono::Duration::days(HISTORY_DAYS);
        self.history.retain(|d, _| *d >= oldest && *d < day);
    }

    pub fn book(&mut self, name: &str, model: Option<&str>, requests: u64, tokens: u64, day: NaiveDate) {
        self.roll(day);
        let model = model.map(|m| m.strip_prefix("models/").unwrap_or(m)).unwrap_or(NO_MODEL);
        let t = self.today.entry(name.to_string()).or_default().entry(model.to_string()).or_default();
        t.add(DayTotals { requests, tokens });
    }

    /// The client's totals today over every model.
    pub fn total(&self, name: &str) -> DayTotals {
        let mut t = DayTotals::default();
        self.today.get(name).into_iter().flat_map(|m| m.values()).for_each(|m| t.add(*m));
        t
    }

    pub fn history(&self) -> &BTreeMap<NaiveDate, BTreeMap<String, DayTotals>> {
        &self.history
    }

    /// Take over what a usage file says (today's counts if it is today's, else into history).
    pub fn restore(&mut self, file: &UsageFile, today: NaiveDate) {
        self.day = Some(file.quota_day);
        self.today = file.clients.clone();
        self.history = file.client_history.clone();
        self.roll(today);
    }

    /// Write the books into a usage-file snapshot.
    pub fn fill(&self, file: &mut UsageFile) {
        file.clients = self.today.clone();
        file.client_history = self.history.clone();
    }
}

/// Why a client was refused (the `reason` label of `gkm_client_refused_total`).
fn over(client: &Client, t: DayTotals, pending: u64) -> Option<&'static str> {
    if client.rpd.is_some_and(|rpd| t.requests.saturating_add(pending) >= rpd) {
        Some("rpd")
    } else if client.tpd.is_some_and(|tpd| t.tokens >= tpd) {
        Some("tpd")
    } else {
        None
    }
}

/// The named clients in effect (swapped whole on reload) and their books.
pub struct Clients {
    table: RwLock<Arc<Vec<Arc<Client>>>>,
    books: Mutex<Books>,
    tz: Tz,
}

/// A request admitted against a client's budget: in flight until dropped.
pub struct Ticket<'a> {
    clients: &'a Clients,
    name: Arc<str>,
}

impl Ticket<'_> {
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut books = self.clients.books.lock();
        if let Some(p) = books.pending.get_mut(&*self.name) {
            *p = p.saturating_sub(1);
        }
    }
}

/// One client in `/status` `clients`.
#[derive(Debug, Clone, Serialize)]
pub struct ClientView {
    pub name: String,
    pub admin: bool,
    /// `ok`, or `over_rpd` / `over_tpd` when its budget for the day is spent.
    pub state: &'static str,
    pub requests: u64,
    pub tokens: u64,
    pub models: BTreeMap<String, DayTotals>,
    pub limits: LimitsView,
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitsView {
    pub rpd: Option<u64>,
    pub tpd: Option<u64>,
    /// The model patterns, or `null` for every model.
    pub models: Option<Vec<String>>,
    /// What is left today, `null` without a budget.
    pub remaining_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
}

impl Clients {
    pub fn new(clients: Vec<Client>, tz: Tz) -> Clients {
        Clients {
            table: RwLock::new(Arc::new(clients.into_iter().map(Arc::new).collect())),
            books: Mutex::new(Books::default()),
            tz,
        }
    }

    /// Replace the clients (a reload); books of every name are kept.
    pub fn replace(&self, clients: Vec<Client>) {
        *self.table.write() = Arc::new(clients.into_iter().map(Arc::new).collect());
    }

    pub fn len(&self) -> usize {
        self.table.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Is any client marked `admin`?
    pub fn has_admin(&self) -> bool {
        self.table.read().iter().any(|c| c.admin)
    }

    /// The client whose token was presented (in any style; Basic's password with `allow_basic`).
    /// Every candidate is compared with every token, whichever matches.
    pub fn identify(&self, presented: &Presented, allow_basic: bool) -> Option<Arc<Client>> {
        let table = self.table.read().clone();
        let mut found: Option<usize> = None;
        for candidate in presented.candidates(allow_basic) {
            let d = digest(candidate);
            for (i, c) in table.iter().enumerate() {
                if digest_eq(&d, &c.digest) {
                    found = Some(i);
                }
            }
        }
        found.and_then(|i| table.get(i).cloned())
    }

    pub fn get(&self, name: &str) -> Option<Arc<Client>> {
        self.table.read().iter().find(|c| c.name == name).cloned()
    }

    /// Admit one request of `client` at `now`, or refuse it (429 until the reset) when its
    /// budget for the day is spent.
    pub fn admit(&self, client: &Client, now: DateTime<Utc>) -> Result<Ticket<'_>, ProxyError> {
        let day = crate::calendar::quota_day_at(self.tz, now);
        let mut books = self.books.lock();
        books.roll(day);
        let pending = books.pending.get(&client.name).copied().unwrap_or(0);
        if let Some(reason) = over(client, books.total(&client.name), pending) {
            *books.refused.entry((client.name.clone(), reason)).or_default() += 1;
            drop(books);
            let reset = crate::calendar::next_reset_at(self.tz, now);
            let secs = (reset.with_timezone(&Utc) - now).num_seconds().max(1) as u64;
            let limit = if reason == "rpd" { client.rpd } else { client.tpd }.unwrap_or(0);
            return Err(ProxyError::BudgetExceeded {
                client: client.name.clone(),
                what: reason,
                limit,
                retry_after_secs: secs,
                until: reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            });
        }
        *books.pending.entry(client.name.clone()).or_default() += 1;
        Ok(Ticket { clients: self, name: Arc::from(client.name.as_str()) })
    }

    /// May the client `name` (none: a plain `--token`) use `model`?
    pub fn allows(&self, name: Option<&str>, model: &str) -> bool {
        name.and_then(|n| self.get(n)).is_none_or(|c| c.allows(model))
    }

    /// 403 when the client `name` may not use `model`.
    pub fn check_model(&self, name: Option<&str>, model: Option<&str>) -> Result<(), ProxyError> {
        let (Some(name), Some(model)) = (name, model) else { return Ok(()) };
        let Some(client) = self.get(name) else { return Ok(()) };
        if client.allows(model) {
            return Ok(());
        }
        *self.books.lock().refused.entry((client.name.clone(), "model")).or_default() += 1;
        Err(ProxyError::ModelNotAllowed { client: client.name.clone(), model: model.to_string() })
    }

    /// Book `requests` and `tokens` of `model` to the client `name`.
    pub fn book(&self, name: &str, model: Option<&str>, requests: u64, tokens: u64, now: DateTime<Utc>) {
        let day = crate::calendar::quota_day_at(self.tz, now);
        self.books.lock().book(name, model, requests, tokens, day);
    }

    pub fn restore(&self, file: &UsageFile, now: DateTime<Utc>) {
        self.books.lock().restore(file, crate::calendar::quota_day_at(self.tz, now));
    }

    /// The books into a usage-file snapshot (rolled to `now` first).
    pub fn fill(&self, file: &mut UsageFile, now: DateTime<Utc>) {
        let mut books = self.books.lock();
        books.roll(crate::calendar::quota_day_at(self.tz, now));
        books.fill(file);
    }

    /// A copy of the books rolled to `now` (views read it and let go of the lock).
    pub fn books(&self, now: DateTime<Utc>) -> Books {
        let mut books = self.books.lock();
        books.roll(crate::calendar::quota_day_at(self.tz, now));
        books.clone()
    }

    /// `/status` `clients`: every configured client, then names that are only in the books
    /// (removed from the file today), in file order.
    pub fn view(&self, now: DateTime<Utc>) -> Vec<ClientView> {
        let books = self.books(now);
        let table = self.table.read().clone();
        let mut out: Vec<ClientView> = table
            .iter()
            .map(|c| {
                let t = books.total(&c.name);
                ClientView {
                    name: c.name.clone(),
                    admin: c.admin,
                    state: over(c, t, 0)
                        .map(|r| if r == "rpd" { "over_rpd" } else { "over_tpd" })
                        .unwrap_or("ok"),
                    requests: t.requests,
                    tokens: t.tokens,
                    models: books.today.get(&c.name).cloned().unwrap_or_default(),
                    limits: LimitsView {
                        rpd: c.rpd,
                        tpd: c.tpd,
                        models: (!c.models.is_empty()).then(|| c.models.clone()),
                        remaining_requests: c.rpd.map(|l| l.saturating_sub(t.requests)),
                        remaining_tokens: c.tpd.map(|l| l.saturating_sub(t.tokens)),
                    },
                }
            })
            .collect();
        for (name, models) in &books.today {
            if !table.iter().any(|c| &c.name == name) {
                let t = books.total(name);
                out.push(ClientView {
                    name: name.clone(),
                    admin: false,
                    state: "removed",
                    requests: t.requests,
                    tokens: t.tokens,
                    models: models.clone(),
                    limits: LimitsView {
                        rpd: None,
                        tpd: None,
                        models: None,
                        remaining_requests: None,
                        remaining_tokens: None,
                    },
                });
            }
        }
        out
    }

    /// The `/metrics` families labelled `client`.
    pub fn render_metrics(&self, out: &mut String, now: DateTime<Utc>) {
        let books = self.books(now);
        out.push_str("# HELP gkm_client_requests_today Requests booked today per client and model.\n");
        out.push_str("# TYPE gkm_client_requests_today gauge\n");
        let mut tokens = String::new();
        for (name, models) in &books.today {
            for (model, t) in models {
                let model = model.replace(['"', '\\', '\n'], "_");
                let labels = format!("client=\"{name}\",model=\"{model}\"");
                let _ = writeln!(out, "gkm_client_requests_today{{{labels}}} {}", t.requests);
                let _ = writeln!(tokens, "gkm_client_tokens_today{{{labels}}} {}", t.tokens);
            }
        }
        out.push_str("# HELP gkm_client_tokens_today Tokens booked today per client and model.\n");
        out.push_str("# TYPE gkm_client_tokens_today gauge\n");
        out.push_str(&tokens);
        out.push_str(
            "# HELP gkm_client_refused_total Requests refused for a client's budget or model patterns.\n",
        );
        out.push_str("# TYPE gkm_client_refused_total counter\n");
        for ((name, reason), n) in &books.refused {
            let _ = writeln!(out, "gkm_client_refused_total{{client=\"{name}\",reason=\"{reason}\"}} {n}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const LA: Tz = chrono_tz::America::Los_Angeles;

    fn at(h: u32) -> DateTime<Utc> {
        LA.with_ymd_and_hms(2026, 11, 22, h, 0, 0).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn lines_with_budgets_patterns_and_admin() {
        let p = parse("# clients\nalice tok-alice-1 rpd=10 tpd=500 models=gemini-2.5-*|gemma-*\nops tok-ops-11 admin # the operator\n\n").unwrap();
        assert_eq!(p.clients.len(), 2);
        assert_eq!(p.tokens, vec!["tok-alice-1", "tok-ops-11"]);
        let a = &p.clients[0];
        assert_eq!((a.rpd, a.tpd, a.admin), (Some(10), Some(500), false));
        assert!(a.allows("gemini-2.5-flash") && a.allows("models/gemma-3") && !a.allows("gemini-1.5-pro"));
        assert!(p.clients[1].admin && p.clients[1].allows("anything"));
        assert!(!format!("{a:?}").contains("tok-alice"));
    }

    #[test]
    fn bad_lines_are_all_reported_without_their_tokens() {
        let e =
            parse("a secret-one rpd=x\nb\na secret-two\nc secret-one\nd secret-4 color=red\n").unwrap_err();
        for want in
            ["line 1: rpd=x", "line 2", "line 3: the name a", "line 4", "line 5: unknown field 'color'"]
        {
            assert!(e.contains(want), "{e}");
        }
        assert!(!e.contains("secret"), "{e}");
        assert!(parse("# nothing\n").is_err());
    }

    #[test]
    fn identify_by_any_style_and_basic_only_when_allowed() {
        let p = parse("a tok-aaaa\nb tok-bbbb\n").unwrap();
        let clients = Clients::new(p.clients, LA);
        let t = crate::router::Target::parse("/v1beta/models?key=tok-bbbb");
        let pres = Presented::from_request(&[], &t);
        assert_eq!(clients.identify(&pres, false).unwrap().name, "b");
        let none = crate::router::Target::parse("/x");
        // "u:tok-aaaa"
        let basic = vec![("authorization".to_string(), "Basic dTp0b2stYWFhYQ==".to_string())];
        assert!(clients.identify(&Presented::from_request(&basic, &none), false).is_none());
        assert_eq!(clients.identify(&Presented::from_request(&basic, &none), true).unwrap().name, "a");
    }

    #[test]
    fn budgets_count_requests_in_flight_and_tokens_booked() {
        let p = parse("a tok-aaaa rpd=2 tpd=100\n").unwrap();
        let clients = Clients::new(p.clients, LA);
        let a = clients.get("a").unwrap();
        let t1 = clients.admit(&a, at(9)).unwrap();
        let t2 = clients.admit(&a, at(9)).unwrap();
        let e = clients.admit(&a, at(9)).err().unwrap();
        assert_eq!(e.status(), 429);
        drop((t1, t2));
        clients.book("a", Some("m"), 1, 100, at(9));
        // One request booked, but the tokens are spent.
        let e = clients.admit(&a, at(10)).err().unwrap();
        assert!(matches!(e, ProxyError::BudgetExceeded { what: "tpd", .. }));
        // A new day: history keeps yesterday.
        let next = at(9) + chrono::Duration::days(1);
        assert!(clients.admit(&a, next).is_ok());
        let books = clients.books(next);
        assert_eq!(books.history().values().next().unwrap()["a"], DayTotals { requests: 1, tokens: 100 });
        assert_eq!(books.total("a"), DayTotals::default());
    }

    #[test]
    fn books_survive_a_usage_file_round_trip() {
        let mut b = Books::default();
        let day = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        b.book("a", Some("models/m"), 2, 30, day - chrono::Duration::days(1));
        b.book("a", Some("m"), 1, 5, day);
        let mut file = UsageFile::new(day, "America/Los_Angeles");
        b.fill(&mut file);
        let text = serde_json::to_string(&file).unwrap();
        let back: UsageFile = serde_json::from_str(&text).unwrap();
        let mut c = Books::default();
        c.restore(&back, day);
        assert_eq!(c.total("a"), DayTotals { requests: 1, tokens: 5 });
        assert_eq!(c.history().len(), 1);
        // The file of a past day: all of it becomes history.
        let mut d = Books::default();
        d.restore(&back, day + chrono::Duration::days(1));
        assert_eq!(d.total("a"), DayTotals::default());
        assert_eq!(d.history()[&day]["a"], DayTotals { requests: 1, tokens: 5 });
    }
}
