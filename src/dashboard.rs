//! The `/dashboard` page: one self-contained HTML5 document rendered from the pool's typed
//! `/status` view ([`StatusView`]) and its 30-day usage history summed per day ([`Daily`]):
//! header with the reset countdown, totals, one card per key with today's usage per model as
//! bars, a 30-day chart of requests, a footer. A large pool (more than [`CARDS_SHOWN`] keys) gets
//! a table per project and model instead, the cards of its worst keys, and pages of every key
//! ([`View::Page`], `/dashboard?page=N`, [`KEYS_PER_PAGE`] a page) as table rows, so that the page
//! stays the same size however many keys there are.
//!
//! It owns only the rendering. It is a pure function of its inputs: it never does I/O, takes no
//! lock and never reads the clock (`now` is a parameter). The page has no scripts, no external
//! assets and no links but to its own pages (`?page=N`): an inline `<style>`, inline SVG and a
//! 30-second `<meta>` refresh.
//!
//! Every string taken from the view is HTML-escaped, and anything in it that looks like a raw
//! Google API key (`AIza` and 20 or more key characters) is masked before it is escaped, so that
//! the page shows keys by mask and fingerprint only. No input makes it panic (counts saturate,
//! dates at chrono's limits are skipped).

use chrono::{DateTime, Days, FixedOffset, NaiveDate, TimeDelta, Utc};
use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::status::{KeyStateName, KeyView, ModelView, StatusView};

/// How many past quota days the chart shows before today.
const HISTORY_DAYS: u64 = 30;
/// Up to this many keys the page shows a card for each; past it, a table per project and model
/// and the cards of this many worst keys (disabled, parked, cooling, then the busiest), every key
/// being on the pages.
pub const CARDS_SHOWN: usize = 50;
/// Keys on one page of `/dashboard?page=N`.
pub const KEYS_PER_PAGE: usize = 100;
/// At most this many rows in the table per project and model (the ones with the most blocked
/// keys, then the busiest); the others are counted.
const PROJECT_ROWS: usize = 100;

/// What a dashboard shows: the overview (`/dashboard`) or one page of every key in the key
/// file's order (`/dashboard?page=N`, pages from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Overview,
    Page(usize),
}

/// One past day over the whole pool: requests, tokens, and how many keys were used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayUse {
    pub requests: u64,
    pub tokens: u64,
    pub keys: u64,
}

/// The history the chart needs: per day, the pool's totals.
pub type Daily = BTreeMap<NaiveDate, DayUse>;

/// The pool's history (day → fingerprint → totals) summed per day. The one place that reads the
/// history's form; cheap enough to run under the pool lock (no allocation per key), so that the
/// history is never copied.
pub fn daily(history: &crate::history::History) -> Daily {
    history
        .days()
        .map(|day| {
            let sum = history.on(day).fold(DayUse::default(), |a, (_, v)| DayUse {
                requests: a.requests.saturating_add(v.requests),
                tokens: a.tokens.saturating_add(v.tokens),
                keys: a.keys + u64::from(!v.is_zero()),
            });
            (day, sum)
        })
        .collect()
}

/// The keys `view` shows, as indices into `status.keys`: on the overview of a small pool every
/// key, of a large one the [`CARDS_SHOWN`] worst (disabled, parked, cooling, then the busiest;
/// the key file's order among equals); on a page its [`KEYS_PER_PAGE`] keys in the key file's
/// order (none past the last page).
pub fn shown(status: &StatusView, view: View) -> Vec<usize> {
    let keys = &status.keys;
    match view {
        View::Overview if keys.len() <= CARDS_SHOWN => (0..keys.len()).collect(),
        View::Overview => {
            let mut worst: Vec<usize> = (0..keys.len()).collect();
            worst.sort_by_key(|&i| (state_rank(keys[i].state), Reverse(keys[i].requests)));
            worst.truncate(CARDS_SHOWN);
            worst
        }
        View::Page(page) => {
            let start = page.saturating_sub(1).saturating_mul(KEYS_PER_PAGE).min(keys.len());
            (start..start.saturating_add(KEYS_PER_PAGE).min(keys.len())).collect()
        }
    }
}

/// Renders the dashboard. `status` is the pool's `/status` view, `daily` the pool's totals per
/// past day (today's come from `status`), `view` and `shown` (from [`shown`]) what part of the
/// pool it shows, `now` the current instant; `tail` (the admin section) goes at the end of the
/// page's `<main>`.
pub fn render(
    status: &StatusView,
    daily: &Daily,
    view: View,
    shown: &[usize],
    now: DateTime<Utc>,
    tail: &str,
) -> String {
    let ctx = Ctx { now, today: status.quota_day };
    let cards = || -> Vec<Card> { shown.iter().filter_map(|&i| status.keys.get(i)).map(Card::new).collect() };
    let large = status.keys.len() > CARDS_SHOWN;

    let mut out = String::with_capacity(64 * 1024);
    out.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<meta http-equiv=\"refresh\" content=\"30\">\n",
        "<meta name=\"robots\" content=\"noindex, nofollow\">\n",
        "<meta name=\"referrer\" content=\"no-referrer\">\n",
        "<title>gemini-key-manager · dashboard</title>\n<style>\n",
    ));
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n<main>\n");
    header(&mut out, status, &ctx);
    totals(&mut out, status);
    model_limits(&mut out, status);
    match view {
        View::Overview if large => {
            projects_table(&mut out, status);
            let mut intro = format!(
                "<p class=\"none\">The {} worst of {} keys (disabled, parked, cooling, then the busiest); \
                 {} more keys on the pages, every key in the key file&#39;s order, {KEYS_PER_PAGE} a page:</p>\n",
                thousands(shown.len() as u64),
                thousands(status.keys.len() as u64),
                thousands(status.keys.len().saturating_sub(shown.len()) as u64),
            );
            pager(&mut intro, None, status.keys.len().div_ceil(KEYS_PER_PAGE));
            key_cards(&mut out, &cards(), &intro, &ctx);
        }
        View::Overview => key_cards(&mut out, &cards(), "", &ctx),
        View::Page(page) => key_table(&mut out, status, &cards(), page, shown.first().copied(), &ctx),
    }
    if view == View::Overview {
        history_chart(&mut out, status, daily, &ctx);
    }
    footer(&mut out, &ctx);
    out.push_str(tail);
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

const STYLE: &str = r#":root{color-scheme:light dark;--bg:#f5f6f8;--card:#fff;--fg:#1d232b;--muted:#5b6472;--line:#dde1e7;
--bar:#3b6ea8;--today:#1f4e82;--track:#e8ecf1;--ok:#0b6b55;--ok-bg:#e2f3ec;--cool:#7f5200;--cool-bg:#fcf0d6;
--park:#8a2f68;--park-bg:#f8e5f0;--off:#434a54;--off-bg:#eceef1}
@media (prefers-color-scheme:dark){:root{--bg:#14171c;--card:#1c2027;--fg:#e6e9ee;--muted:#9aa3af;--line:#2e343d;
--bar:#6b9fd8;--today:#a9cbf2;--track:#2a3039;--ok:#7fd8b8;--ok-bg:#16352c;--cool:#f3c46b;--cool-bg:#3a2e14;
--park:#eaa6cf;--park-bg:#3a1f30;--off:#c3c9d2;--off-bg:#2a2f37}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:18px 16px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:.92em}
h1{font-size:1.45rem;margin:0 0 2px;letter-spacing:-.01em}
h2{font-size:.78rem;margin:0 0 8px;color:var(--muted);font-weight:650;text-transform:uppercase;letter-spacing:.06em}
section{margin-top:22px}
.sub{color:var(--muted);margin:0}
.reset{margin:8px 0 0}
.reset strong{font-size:1.1rem}
.when{color:var(--muted)}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(112px,1fr));gap:10px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.stat .v{display:block;font-size:1.45rem;font-weight:650;font-variant-numeric:tabular-nums}
.stat .l{color:var(--muted);font-size:.85rem}
.states .zero{opacity:.6}
.states{display:flex;flex-wrap:wrap;gap:6px;margin:10px 0 0;padding:0;list-style:none}
.keys{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,470px),1fr));gap:12px}
.khead{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;gap:6px 10px}
.khead h3{margin:0;font-size:1.05rem;overflow-wrap:anywhere}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:10px 0 0;font-size:.88rem}
.meta dt{color:var(--muted)}
.meta dd{margin:0;overflow-wrap:anywhere}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:.82rem;font-weight:600;
border:1.5px solid currentColor;overflow-wrap:anywhere}
.tag{display:inline-block;padding:0 6px;border-radius:6px;font-size:.75rem;font-weight:600;border:1px solid currentColor}
.usable{color:var(--ok);background:var(--ok-bg)}
.cooling{color:var(--cool);background:var(--cool-bg);border-style:dashed}
.parked{color:var(--park);background:var(--park-bg);border-style:double;border-width:3px}
.tag.parked{border-width:3px}
.disabled,.unknown{color:var(--off);background:var(--off-bg);border-style:dotted}
.models{list-style:none;margin:10px 0 0;padding:10px 0 0;border-top:1px solid var(--line)}
.models li{margin:0 0 8px}
.models li:last-child{margin:0}
.mrow{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:baseline;gap:2px 10px;font-size:.88rem}
.mname{overflow-wrap:anywhere}
.mnum{margin-left:auto;color:var(--muted);font-variant-numeric:tabular-nums;white-space:nowrap}
svg.bar{display:block;width:100%;height:8px;margin-top:3px}
.bar .t{fill:var(--track)}
.bar .f{fill:var(--bar)}
.none{color:var(--muted);font-size:.88rem;margin:10px 0 0}
.chart svg{display:block;width:100%;height:auto;max-height:300px}
.chart text{fill:var(--muted);font-size:9.5px;font-family:inherit}
.chart .grid{stroke:var(--line);stroke-width:1}
.chart .d{fill:var(--bar)}
.chart .d.today{fill:var(--today)}
.chart text.today{fill:var(--fg);font-weight:700}
.chart .hit{fill:transparent}
.chart .hit:hover{fill:var(--track)}
.summary{margin:8px 0 0;font-size:.9rem}
details{margin-top:8px;font-size:.88rem}
summary{cursor:pointer;color:var(--muted)}
table{border-collapse:collapse;margin-top:6px;font-variant-numeric:tabular-nums}
th,td{padding:3px 12px 3px 0;text-align:right;border-bottom:1px solid var(--line)}
th:first-child,td:first-child{text-align:left}
th{color:var(--muted);font-weight:600}
.pager{display:flex;flex-wrap:wrap;gap:4px 6px;margin:10px 0;font-size:.88rem}
.pager a,.pager strong,.pager span{padding:1px 8px;border:1px solid var(--line);border-radius:6px;color:var(--fg)}
.pager span{border-color:transparent;color:var(--muted)}
footer{margin:26px 0 6px;color:var(--muted);font-size:.84rem}
footer p{margin:4px 0}
@media (max-width:900px){.chart text{font-size:12px}}
@media (max-width:560px){main{padding:12px 10px}.card{padding:10px 12px}.chart text{font-size:18px}.stat .v{font-size:1.1rem}}
"#;

/// What formatting times needs: the instant of rendering and the quota day (for "today or not").
struct Ctx {
    now: DateTime<Utc>,
    today: NaiveDate,
}

impl Ctx {
    /// `10:01` on the quota day, `Nov 23 00:00` on another day (in the time's own offset: the
    /// status gives its times in the reset zone).
    fn when(&self, t: DateTime<FixedOffset>) -> String {
        if t.date_naive() == self.today {
            t.format("%H:%M").to_string()
        } else {
            t.format("%b %-d %H:%M").to_string()
        }
    }
}

/// A shape as well as a colour and the text, so that no state is told by colour alone.
fn symbol(s: KeyStateName) -> &'static str {
    match s {
        KeyStateName::Usable => "✓",
        KeyStateName::Cooling => "◔",
        KeyStateName::Parked => "‖",
        KeyStateName::Disabled => "✕",
    }
}

/// A key as its card shows it: the models busiest first (requests, then tokens, then name).
struct Card<'a> {
    key: &'a KeyView,
    models: Vec<(&'a str, &'a ModelView)>,
}

impl<'a> Card<'a> {
    fn new(key: &'a KeyView) -> Card<'a> {
        let mut models: Vec<(&str, &ModelView)> = key.models.iter().map(|(n, m)| (n.as_str(), m)).collect();
        models.sort_by(|(an, a), (bn, b)| {
            b.requests.cmp(&a.requests).then(b.tokens.cmp(&a.tokens)).then(an.cmp(bn))
        });
        Card { key, models }
    }
}

/// HTML-escapes `s` for text and for double- or single-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A string from the view, ready for the page: raw-key-looking parts masked, then escaped.
fn text(s: &str) -> String {
    escape(&crate::redact::key_shapes(s))
}

/// `12345` → `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Short axis labels: `950`, `1.2k`, `34k`, `5.6M`.
fn compact(n: u64) -> String {
    let scaled = |unit: u64, suffix: &str| {
        let whole = n / unit;
        let tenth = (n % unit) * 10 / unit;
        if whole < 10 && tenth > 0 { format!("{whole}.{tenth}{suffix}") } else { format!("{whole}{suffix}") }
    };
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => scaled(1_000, "k"),
        1_000_000..1_000_000_000 => scaled(1_000_000, "M"),
        _ => scaled(1_000_000_000, "G"),
    }
}

/// `7 h 12 min`, `12 min`, `2 d 3 h`, `less than a minute` (negative spans count as zero).
pub fn span(d: TimeDelta) -> String {
    let mins = d.num_minutes().max(0);
    let (days, hours, minutes) = (mins / (24 * 60), mins / 60 % 24, mins % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => "less than a minute".to_string(),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

/// The model name as shown: `*` (a limit for every model) reads "all models".
fn model_label(name: &str) -> String {
    if name == "*" { "all models".to_string() } else { text(name) }
}

fn header(out: &mut String, status: &StatusView, ctx: &Ctx) {
    let reset = status.next_reset;
    out.push_str("<header>\n<h1>gemini-key-manager</h1>\n<p class=\"sub\">");
    out.push_str(&format!("Quota day <strong>{}</strong>", status.quota_day.format("%Y-%m-%d")));
    out.push_str(&format!(" · times in <strong>{}</strong>", text(&status.timezone)));
    let local_now = ctx.now.with_timezone(reset.offset());
    out.push_str(&format!(" · as of {}", local_now.format("%H:%M")));
    out.push_str("</p>\n<p class=\"reset\">");
    let left = reset.with_timezone(&Utc).signed_duration_since(ctx.now);
    let at = format!(
        "<time datetime=\"{}\">{}</time>",
        escape(&reset.to_rfc3339()),
        reset.format("%Y-%m-%d %H:%M (UTC%:z)")
    );
    if left > TimeDelta::zero() {
        out.push_str(&format!(
            "<strong>resets in {}</strong> <span class=\"when\">· at {at}</span>",
            span(left)
        ));
    } else {
        out.push_str(&format!(
            "<strong>reset due</strong> <span class=\"when\">· was at {at}, {} ago</span>",
            span(-left)
        ));
    }
    out.push_str("</p>\n</header>\n");
}

fn totals(out: &mut String, status: &StatusView) {
    let mut counts = [0u64; KeyStateName::ALL.len()];
    for k in &status.keys {
        counts[usize::from(state_rank(k.state))] += 1;
    }
    let count = |s: KeyStateName| counts[usize::from(state_rank(s))];
    let total = status.keys.len() as u64;
    out.push_str(
        "<section aria-labelledby=\"totals-h\">\n<h2 id=\"totals-h\">Today</h2>\n<div class=\"stats\">\n",
    );
    for (value, label) in [
        (thousands(status.totals.requests), "requests"),
        (thousands(status.totals.tokens), "tokens"),
        (format!("{} / {}", thousands(count(KeyStateName::Usable)), thousands(total)), "keys usable"),
    ] {
        out.push_str(&format!(
            "<div class=\"card stat\"><span class=\"v\">{value}</span><span class=\"l\">{label}</span></div>\n"
        ));
    }
    out.push_str("</div>\n<ul class=\"states\" aria-label=\"Keys per state\">\n");
    for s in KeyStateName::ALL {
        let n = count(s);
        out.push_str(&format!(
            "<li class=\"badge {0}{3}\"><span aria-hidden=\"true\">{1}</span> {2} {0}</li>\n",
            s.as_str(),
            symbol(s),
            thousands(n),
            if n == 0 { " zero" } else { "" }
        ));
    }
    out.push_str("</ul>\n</section>\n");
}

/// What remains today per model, summed over the projects that know its daily limit (SPEC §14):
/// "gemini-2.5-pro: 67 of 750 left today across 3 projects".
fn model_limits(out: &mut String, status: &StatusView) {
    if status.models.is_empty() {
        return;
    }
    out.push_str("<section aria-labelledby=\"limits-h\">\n<h2 id=\"limits-h\">Left today</h2>\n<ul class=\"card models\">\n");
    for (model, v) in &status.models {
        out.push_str(&format!(
            "<li><code>{}</code>: {} of {} left today across {}</li>\n",
            model_label(model),
            thousands(v.remaining_today),
            thousands(v.rpd),
            plural(v.projects, "project", "projects"),
        ));
    }
    out.push_str("</ul>\n</section>\n");
}

/// The badge text after the symbol: `usable`, `cooling until 10:05 for gemini-2.5-flash`,
/// `parked until 00:00 for all models`, `disabled: API_KEY_INVALID`.
fn badge_text(card: &Card, ctx: &Ctx) -> String {
    let until = |pick: fn(&ModelView) -> Option<DateTime<FixedOffset>>, word: &str| {
        let mut groups: Vec<(DateTime<FixedOffset>, Vec<String>)> = Vec::new();
        for (name, m) in &card.models {
            if let Some(t) = pick(m) {
                match groups.iter_mut().find(|(g, _)| *g == t) {
                    Some((_, names)) => names.push(model_label(name)),
                    None => groups.push((t, vec![model_label(name)])),
                }
            }
        }
        groups.sort_by_key(|(t, _)| *t);
        if groups.is_empty() {
            return word.to_string();
        }
        let parts: Vec<String> = groups
            .iter()
            .map(|(t, names)| format!("until {} for {}", ctx.when(*t), names.join(", ")))
            .collect();
        format!("{word} {}", parts.join("; "))
    };
    match card.key.state {
        KeyStateName::Usable => "usable".to_string(),
        KeyStateName::Cooling => until(|m| m.cooling_until, "cooling"),
        KeyStateName::Parked => until(|m| m.parked_until, "parked"),
        KeyStateName::Disabled => match &card.key.disabled_reason {
            Some(r) => format!("disabled: {}", text(r)),
            None => "disabled".to_string(),
        },
    }
}

/// Worst first: disabled, parked, cooling, usable.
fn state_rank(state: KeyStateName) -> u8 {
    match state {
        KeyStateName::Disabled => 0,
        KeyStateName::Parked => 1,
        KeyStateName::Cooling => 2,
        KeyStateName::Usable => 3,
    }
}

/// A large pool's keys summed per project and model (the keys without a project label, each
/// its own project, as one row per model): keys, how many are blocked for the model, requests and
/// tokens today. Past [`PROJECT_ROWS`] rows, those with the most blocked keys, then the busiest.
fn projects_table(out: &mut String, status: &StatusView) {
    #[derive(Default)]
    struct Row {
        keys: u64,
        blocked: u64,
        requests: u64,
        tokens: u64,
    }
    let mut rows: BTreeMap<(Option<&str>, &str), Row> = BTreeMap::new();
    for key in &status.keys {
        let project = key.project.as_deref();
        for (model, m) in &key.models {
            let row = rows.entry((project, model)).or_default();
            row.keys += 1;
            row.blocked += u64::from(m.parked_until.is_some() || m.cooling_until.is_some());
            row.requests = row.requests.saturating_add(m.requests);
            row.tokens = row.tokens.saturating_add(m.tokens);
        }
    }
    out.push_str(&format!(
        "<section aria-labelledby=\"projects-h\">\n<h2 id=\"projects-h\">Projects and models ({} keys)</h2>\n",
        thousands(status.keys.len() as u64)
    ));
    if rows.is_empty() {
        out.push_str("<p class=\"card none\">No requests today.</p>\n</section>\n");
        return;
    }
    let mut rows: Vec<((Option<&str>, &str), Row)> = rows.into_iter().collect();
    let hidden = rows.len().saturating_sub(PROJECT_ROWS);
    if hidden > 0 {
        rows.sort_by_key(|(_, r)| (Reverse(r.blocked), Reverse(r.requests)));
        rows.truncate(PROJECT_ROWS);
        rows.sort_by_key(|(k, _)| *k);
    }
    out.push_str(
        "<div class=\"card\"><table>\n<tr><th>project</th><th>model</th><th>keys</th><th>parked or cooling</th>\
         <th>requests</th><th>tokens</th></tr>\n",
    );
    for ((project, model), row) in &rows {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            project.map_or_else(|| "<em>keys without a project label</em>".to_string(), text),
            model_label(model),
            thousands(row.keys),
            thousands(row.blocked),
            thousands(row.requests),
            thousands(row.tokens)
        ));
    }
    out.push_str("</table>\n");
    if hidden > 0 {
        out.push_str(&format!(
            "<p class=\"none\">The {PROJECT_ROWS} rows with the most parked or cooling keys, then the busiest; \
             {} more project and model rows (<code>/status?page=1</code> lists every key).</p>\n",
            thousands(hidden as u64)
        ));
    }
    out.push_str("</div>\n</section>\n");
}

/// One page of every key as table rows (`/dashboard?page=N`): the key, its fingerprint,
/// project, state, today's usage and when it was last used; the pager above and below.
fn key_table(
    out: &mut String,
    status: &StatusView,
    keys: &[Card],
    page: usize,
    first: Option<usize>,
    ctx: &Ctx,
) {
    let total = status.keys.len();
    let pages = total.div_ceil(KEYS_PER_PAGE);
    out.push_str("<section aria-labelledby=\"keys-h\">\n<h2 id=\"keys-h\">");
    match first {
        Some(first) => out.push_str(&format!(
            "Keys {}–{} of {} · page {} of {}",
            thousands(first as u64 + 1),
            thousands((first + keys.len()) as u64),
            thousands(total as u64),
            thousands(page as u64),
            thousands(pages as u64)
        )),
        None => out.push_str(&format!("Keys · page {}", thousands(page as u64))),
    }
    out.push_str("</h2>\n");
    pager(out, Some(page), pages);
    if keys.is_empty() {
        out.push_str(&format!(
            "<p class=\"card none\">No keys on this page: {} on {}.</p>\n</section>\n",
            plural(total as u64, "key", "keys"),
            plural(pages as u64, "page", "pages")
        ));
        return;
    }
    out.push_str(
        "<div class=\"card\"><table class=\"keylist\">\n<thead><tr><th scope=\"col\">key</th>\
         <th scope=\"col\">fingerprint</th><th scope=\"col\">project</th><th scope=\"col\">state</th>\
         <th scope=\"col\">requests</th><th scope=\"col\">tokens</th><th scope=\"col\">last used</th></tr></thead>\n<tbody>\n",
    );
    for card in keys {
        let key = card.key;
        let last_used = match key.last_used {
            Some(t) => format!("<time datetime=\"{}\">{}</time>", escape(&t.to_rfc3339()), ctx.when(t)),
            None => "never".to_string(),
        };
        out.push_str(&format!(
            "<tr><td class=\"mono\">{}</td><td><code>{}</code></td><td>{}</td>\
             <td><span class=\"badge {}\"><span aria-hidden=\"true\">{}</span> {}</span></td>\
             <td>{}</td><td>{}</td><td>{last_used}</td></tr>\n",
            text(&key.masked),
            text(&key.id),
            key.project.as_deref().map_or_else(|| "—".to_string(), text),
            key.state.as_str(),
            symbol(key.state),
            badge_text(card, ctx),
            thousands(key.requests),
            thousands(key.tokens),
        ));
    }
    out.push_str("</tbody>\n</table></div>\n");
    pager(out, Some(page), pages);
    out.push_str("</section>\n");
}

/// Links to the pages of every key: the first and the last, two either side of the current one
/// (of the first on the overview), the previous and the next, and back to the overview.
fn pager(out: &mut String, current: Option<usize>, pages: usize) {
    out.push_str("<nav class=\"pager\" aria-label=\"Pages of keys\">");
    let link = |p: usize, label: &str| format!("<a href=\"?page={p}\">{label}</a>");
    if let Some(page) = current {
        out.push_str("<a href=\"dashboard\">overview</a>");
        if page > 1 {
            out.push_str(&link(page.saturating_sub(1).min(pages.max(1)), "‹ previous"));
        }
    }
    let center = current.unwrap_or(1);
    let mut gap = false;
    for p in 1..=pages {
        if p == 1 || p == pages || p.abs_diff(center) <= 2 {
            if gap {
                out.push_str("<span>…</span>");
                gap = false;
            }
            if Some(p) == current {
                out.push_str(&format!("<strong aria-current=\"page\">{p}</strong>"));
            } else {
                out.push_str(&link(p, &p.to_string()));
            }
        } else {
            gap = true;
        }
    }
    if let Some(page) = current
        && page < pages
    {
        out.push_str(&link(page + 1, "next ›"));
    }
    out.push_str("</nav>\n");
}

/// The cards of `keys`, `intro` (HTML) under the section's heading.
fn key_cards(out: &mut String, keys: &[Card], intro: &str, ctx: &Ctx) {
    out.push_str("<section aria-labelledby=\"keys-h\">\n<h2 id=\"keys-h\">Keys</h2>\n");
    out.push_str(intro);
    if keys.is_empty() {
        out.push_str("<p class=\"card none\">No keys are loaded.</p>\n</section>\n");
        return;
    }
    let max = keys.iter().flat_map(|k| k.models.iter().map(|(_, m)| m.requests)).max().unwrap_or(0);
    out.push_str("<div class=\"keys\">\n");
    for card in keys {
        let key = card.key;
        out.push_str(&format!(
            "<article class=\"card key\">\n<div class=\"khead\"><h3 class=\"mono\">{}</h3>\
             <span class=\"badge {}\"><span aria-hidden=\"true\">{}</span> {}</span></div>\n<dl class=\"meta\">\n",
            text(&key.masked),
            key.state.as_str(),
            symbol(key.state),
            badge_text(card, ctx)
        ));
        let id = format!("<code>{}</code>", text(&key.id));
        let project = key.project.as_deref().map_or_else(|| "—".to_string(), text);
        let last_used = match key.last_used {
            Some(t) => {
                let ago = ctx.now.signed_duration_since(t.with_timezone(&Utc));
                let ago =
                    if ago >= TimeDelta::zero() { format!(" ({} ago)", span(ago)) } else { String::new() };
                format!("<time datetime=\"{}\">{}</time>{ago}", escape(&t.to_rfc3339()), ctx.when(t))
            }
            None => "never".to_string(),
        };
        let usage = format!(
            "{} · {}",
            plural(key.requests, "request", "requests"),
            plural(key.tokens, "token", "tokens")
        );
        for (label, value) in
            [("Fingerprint", id), ("Project", project), ("Last used", last_used), ("Today", usage)]
        {
            out.push_str(&format!("<dt>{label}</dt><dd>{value}</dd>\n"));
        }
        out.push_str("</dl>\n");
        model_bars(out, card, max, ctx);
        out.push_str("</article>\n");
    }
    out.push_str("</div>\n</section>\n");
}

fn model_bars(out: &mut String, card: &Card, max: u64, ctx: &Ctx) {
    if card.models.is_empty() {
        out.push_str("<p class=\"none\">No requests today.</p>\n");
        return;
    }
    out.push_str("<ul class=\"models\" aria-label=\"Today per model\">\n");
    for (name, m) in &card.models {
        let mut tags = String::new();
        if let Some(t) = m.parked_until {
            tags.push_str(&format!(" <span class=\"tag parked\">parked until {}</span>", ctx.when(t)));
        }
        if let Some(t) = m.cooling_until {
            tags.push_str(&format!(" <span class=\"tag cooling\">cooling until {}</span>", ctx.when(t)));
        }
        let limits: Vec<String> = [("rpm", m.limits.rpm), ("rpd", m.limits.rpd), ("tpm", m.limits.tpm)]
            .iter()
            .filter_map(|(name, v)| v.map(|v| format!("{} {name}", thousands(v))))
            .collect();
        if !limits.is_empty() {
            let left =
                m.remaining_today.map(|r| format!(", {} left today", thousands(r))).unwrap_or_default();
            tags.push_str(&format!(" <span class=\"tag\">limit {}{left}</span>", limits.join(" · ")));
        }
        // Width in percent of the largest per-model request count on the page; a model with
        // requests keeps a sliver so that it never looks unused.
        let width = if max == 0 { 0.0 } else { (m.requests as f64 / max as f64 * 100.0).clamp(0.0, 100.0) };
        let width = if m.requests > 0 { width.max(0.8) } else { width };
        out.push_str(&format!(
            "<li><div class=\"mrow\"><span class=\"mname\"><code>{}</code>{tags}</span>\
             <span class=\"mnum\">{} · {}</span></div>\
             <svg class=\"bar\" viewBox=\"0 0 100 8\" preserveAspectRatio=\"none\" aria-hidden=\"true\">\
             <rect class=\"t\" width=\"100\" height=\"8\"/><rect class=\"f\" width=\"{width:.1}\" height=\"8\"/></svg></li>\n",
            model_label(name),
            plural(m.requests, "request", "requests"),
            plural(m.tokens, "token", "tokens"),
        ));
    }
    out.push_str("</ul>\n");
}

/// One day of the chart: requests, tokens and keys used, or `None` for a day without a record.
struct Day {
    date: NaiveDate,
    label: String,
    totals: Option<(u64, u64, u64)>,
    today: bool,
}

fn history_chart(out: &mut String, status: &StatusView, daily: &Daily, ctx: &Ctx) {
    let today_totals = (
        status.totals.requests,
        status.totals.tokens,
        status.keys.iter().filter(|k| k.requests > 0).count() as u64,
    );

    // The 30 days before the quota day, then today.
    let mut days: Vec<Day> = Vec::with_capacity(HISTORY_DAYS as usize + 1);
    for back in (1..=HISTORY_DAYS).rev() {
        let Some(date) = ctx.today.checked_sub_days(Days::new(back)) else { continue };
        let totals = daily.get(&date).map(|d| (d.requests, d.tokens, d.keys));
        days.push(Day { date, label: date.format("%b\u{a0}%-d").to_string(), totals, today: false });
    }
    days.push(Day { date: ctx.today, label: "today".to_string(), totals: Some(today_totals), today: true });

    let past_days: Vec<&Day> = days.iter().filter(|d| !d.today && d.totals.is_some()).collect();
    let past_requests = past_days.iter().fold(0u64, |acc, d| acc.saturating_add(d.totals.map_or(0, |t| t.0)));
    let past_tokens = past_days.iter().fold(0u64, |acc, d| acc.saturating_add(d.totals.map_or(0, |t| t.1)));
    let busiest = past_days
        .iter()
        .filter(|d| d.totals.is_some_and(|t| t.0 > 0))
        .max_by_key(|d| d.totals.map_or(0, |t| t.0));
    let mut summary = if past_days.is_empty() {
        "No usage recorded in the last 30 days.".to_string()
    } else {
        format!(
            "Last 30 days: {} and {} over {} with records.",
            plural(past_requests, "request", "requests"),
            plural(past_tokens, "token", "tokens"),
            plural(past_days.len() as u64, "day", "days"),
        )
    };
    if let Some(day) = busiest {
        summary.push_str(&format!(
            " Busiest day: {} with {}.",
            day.label,
            plural(day.totals.map_or(0, |t| t.0), "request", "requests")
        ));
    }
    summary.push_str(&format!(" Today so far: {}.", plural(today_totals.0, "request", "requests")));

    // Geometry in user units; the SVG scales to the card's width.
    const W: f64 = 640.0;
    const H: f64 = 230.0;
    const LEFT: f64 = 46.0;
    const RIGHT: f64 = 6.0;
    const TOP: f64 = 12.0;
    const BOTTOM: f64 = 30.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let max = days.iter().filter_map(|d| d.totals.map(|t| t.0)).max().unwrap_or(0);
    // At least 10 so that an idle chart still has a readable axis (the ceilings are all even).
    let scale = nice_ceiling(max).max(10);
    // Always 31 slots, the days right-aligned: a short history keeps the bars slim.
    let slots = days.len().max(HISTORY_DAYS as usize + 1);
    let first = slots - days.len();
    let slot = plot_w / slots as f64;
    let base = TOP + plot_h;

    out.push_str("<section aria-labelledby=\"hist-h\">\n<h2 id=\"hist-h\">Requests per day</h2>\n<div class=\"card chart\">\n");
    out.push_str(&format!(
        "<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"hist-t hist-d\">\n\
         <title id=\"hist-t\">Requests per day over the last 30 days and today</title>\n\
         <desc id=\"hist-d\">{summary}</desc>\n"
    ));
    for (value, y) in [(0, base), (scale / 2, TOP + plot_h / 2.0), (scale, TOP)] {
        out.push_str(&format!(
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            compact(value)
        ));
    }
    let last = days.len().saturating_sub(1);
    for (i, day) in days.iter().enumerate() {
        let x = LEFT + slot * (first + i) as f64;
        let tip = match day.totals {
            Some((r, t, k)) => format!(
                "{}{}: {}, {}, {}",
                day.date.format("%Y-%m-%d"),
                if day.today { " (today, so far)" } else { "" },
                plural(r, "request", "requests"),
                plural(t, "token", "tokens"),
                plural(k, "key", "keys"),
            ),
            None => format!("{}: no record", day.date.format("%Y-%m-%d")),
        };
        out.push_str(&format!(
            "<g><title>{tip}</title><rect class=\"hit\" x=\"{x:.1}\" y=\"{TOP}\" width=\"{slot:.1}\" height=\"{plot_h:.1}\"/>"
        ));
        let requests = day.totals.map_or(0, |t| t.0);
        if requests > 0 {
            let h = (requests as f64 / scale as f64 * plot_h).max(1.5);
            out.push_str(&format!(
                "<rect class=\"d{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" rx=\"1.5\"/>",
                if day.today { " today" } else { "" },
                x + slot * 0.15,
                base - h,
                slot * 0.7
            ));
        }
        out.push_str("</g>\n");
        // Labels: today, and every 7th day back from it.
        if (last - i).is_multiple_of(7) {
            let anchor = if day.today { "end" } else { "middle" };
            let lx = if day.today { x + slot } else { x + slot / 2.0 };
            out.push_str(&format!(
                "<text{} x=\"{lx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>\n",
                if day.today { " class=\"today\"" } else { "" },
                H - 8.0,
                day.label
            ));
        }
    }
    out.push_str("</svg>\n");
    out.push_str(&format!("<p class=\"summary\">{summary}</p>\n"));
    out.push_str(
        "<details><summary>Daily numbers</summary>\n<table>\n<thead><tr><th scope=\"col\">Day</th>\
         <th scope=\"col\">Requests</th><th scope=\"col\">Tokens</th><th scope=\"col\">Keys used</th></tr></thead>\n<tbody>\n",
    );
    for day in days.iter().rev() {
        let Some((r, t, k)) = day.totals else { continue };
        let name = if day.today {
            format!("{} (today)", day.date.format("%Y-%m-%d"))
        } else {
            day.date.format("%Y-%m-%d").to_string()
        };
        out.push_str(&format!(
            "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            thousands(r),
            thousands(t),
            thousands(k)
        ));
    }
    out.push_str("</tbody>\n</table>\n</details>\n</div>\n</section>\n");
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `n` (0 for 0): the chart's top gridline.
fn nice_ceiling(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let mut step: u64 = 1;
    loop {
        for m in [1u64, 2, 5] {
            match step.checked_mul(m) {
                Some(c) if c >= n => return c,
                Some(_) => {}
                None => return n,
            }
        }
        match step.checked_mul(10) {
            Some(s) => step = s,
            None => return n,
        }
    }
}

fn footer(out: &mut String, ctx: &Ctx) {
    out.push_str(&format!(
        "<footer>\n<p>Keys are shown masked (first and last 4 characters) and by fingerprint (the first 12 hex \
         digits of their SHA-256) only; full keys never appear on this page.</p>\n\
         <p>Rendered {} · refreshes every 30 seconds.</p>\n</footer>\n",
        ctx.now.format("%Y-%m-%d %H:%M:%S UTC")
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::{Value, json};

    use crate::store_format::DayTotals;
    type History = BTreeMap<NaiveDate, BTreeMap<String, DayTotals>>;

    /// A `/status` document as the typed view (the way a client would read it back).
    fn view(v: Value) -> StatusView {
        serde_json::from_value(v).expect("a valid /status document")
    }

    fn no_history() -> History {
        History::new()
    }

    /// The overview page as `/dashboard` renders it, without the admin section.
    fn overview(status: &StatusView, history: &History, now: DateTime<Utc>) -> String {
        let shown = shown(status, View::Overview);
        render(status, &daily(&history.clone().into()), View::Overview, &shown, now, "")
    }

    /// Page `n` of every key.
    fn page_of(status: &StatusView, n: usize) -> String {
        render(status, &Daily::new(), View::Page(n), &shown(status, View::Page(n)), now(), "")
    }

    /// `n` keys like the realistic example's busiest one, fingerprints `000000000000`, `…001`, …;
    /// key 2999 disabled, key 1234 parked, and every key without a project label.
    fn large_pool(n: usize) -> StatusView {
        let mut status = realistic_status();
        let first = status.keys[0].clone();
        let parked = status.keys[1].clone();
        status.keys = (0..n)
            .map(|i| {
                let mut k = if i == 1234 { parked.clone() } else { first.clone() };
                k.id = format!("{i:012x}");
                k.project = None;
                k.state = if i == 2999 { KeyStateName::Disabled } else { k.state };
                k
            })
            .collect();
        let sum = |f: fn(&KeyView) -> u64| status.keys.iter().map(f).sum();
        status.totals = crate::status::Totals { requests: sum(|k| k.requests), tokens: sum(|k| k.tokens) };
        status
    }

    /// 2026-11-22 16:48 in Los Angeles (UTC−8): 7 h 12 min before the reset.
    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 0, 48, 0).single().expect("valid instant")
    }

    fn realistic_status() -> StatusView {
        view(json!({
            "quota_day": "2026-11-22", "timezone": "America/Los_Angeles",
            "next_reset": "2026-11-23T00:00:00-08:00",
            "totals": {"requests": 1312, "tokens": 2_461_380},
            "keys": [
                {"id": "3f2a9c1b7e4d", "masked": "AIza…XyZ1", "project": "proj-a",
                 "state": "usable", "disabled_reason": null, "last_used": "2026-11-22T16:41:09-08:00",
                 "requests": 1187, "tokens": 2_210_950,
                 "models": {
                    "gemini-2.5-flash": {"requests": 1042, "tokens": 1_630_400, "parked_until": null, "cooling_until": null},
                    "gemini-2.5-pro": {"requests": 145, "tokens": 580_550, "parked_until": null, "cooling_until": null}}},
                {"id": "9b71e0c4a2f5", "masked": "AIza…Qm8k", "project": "<script>alert(\"pwn\")</script> & 'co'",
                 "state": "parked", "disabled_reason": null, "last_used": "2026-11-22T09:15:44-08:00",
                 "requests": 125, "tokens": 250_430,
                 "models": {
                    "gemini-2.5-pro": {"requests": 100, "tokens": 240_000, "parked_until": "2026-11-23T00:00:00-08:00", "cooling_until": null},
                    "gemini-2.5-flash": {"requests": 25, "tokens": 10_430, "parked_until": null, "cooling_until": "2026-11-22T16:50:00-08:00"}}},
                {"id": "c05d8e62f19a", "masked": "AIza…7tRw", "project": null,
                 "state": "disabled", "disabled_reason": "API_KEY_INVALID", "last_used": "2026-11-20T13:02:00-08:00",
                 "requests": 0, "tokens": 0, "models": {}}
            ]
        }))
    }

    fn realistic_history() -> History {
        serde_json::from_value(json!({
            "2026-11-17": {"3f2a9c1b7e4d": {"requests": 820, "tokens": 1_402_000}, "9b71e0c4a2f5": {"requests": 310, "tokens": 512_000}},
            "2026-11-18": {"3f2a9c1b7e4d": {"requests": 1503, "tokens": 2_840_100}, "9b71e0c4a2f5": {"requests": 402, "tokens": 700_340}, "c05d8e62f19a": {"requests": 12, "tokens": 9000}},
            "2026-11-19": {"3f2a9c1b7e4d": {"requests": 640, "tokens": 1_002_000}},
            "2026-11-20": {"3f2a9c1b7e4d": {"requests": 1990, "tokens": 3_530_000}, "9b71e0c4a2f5": {"requests": 720, "tokens": 1_150_000}, "c05d8e62f19a": {"requests": 33, "tokens": 41_000}},
            "2026-11-21": {"3f2a9c1b7e4d": {"requests": 1102, "tokens": 1_960_000}, "9b71e0c4a2f5": {"requests": 95, "tokens": 120_500}}
        }))
        .expect("a valid history")
    }

    /// Issue 19: a pool of thousands of keys is summed per project and model (the keys without a
    /// project label as one row, not one per key), the worst keys get a card, the rest is on the
    /// pages, and the page stays small.
    #[test]
    fn a_large_pool_shows_projects_and_the_worst_keys() {
        let status = large_pool(3000);
        let page = overview(&status, &realistic_history(), now());
        assert!(page.len() < 100_000, "{} bytes", page.len());
        assert!(page.contains("Projects and models (3,000 keys)"));
        let unlabelled = "<tr><td><em>keys without a project label</em></td><td>gemini-2.5-flash</td><td>3,000</td><td>1</td>";
        assert!(page.contains(unlabelled), "one row for 3,000 unlabelled keys");
        assert_eq!(
            page.matches("<td><em>keys without a project label</em></td>").count(),
            2,
            "flash and pro"
        );
        assert!(page.contains("The 50 worst of 3,000 keys"));
        assert!(page.contains("2,950 more keys on the pages"));
        assert_eq!(page.matches("<article class=\"card key\">").count(), CARDS_SHOWN);
        let disabled = page.find(&format!("{:012x}", 2999)).expect("the disabled key is among the worst");
        let parked = page.find(&format!("{:012x}", 1234)).expect("the parked key is among the worst");
        assert!(disabled < parked, "disabled first, then parked");
        assert!(!page.contains(&format!("{:012x}", 2998)), "a usable key past the first 48 has no card");
        // The pager: the first pages and the last, nothing past it.
        for p in [1, 2, 3, 30] {
            assert!(page.contains(&format!("<a href=\"?page={p}\">{p}</a>")), "page {p}");
        }
        assert!(!page.contains("?page=4\"") && !page.contains("?page=31"));
        // The chart: per day, not per key.
        assert!(page.contains("<title>2026-11-20: 2,743 requests, 4,721,000 tokens, 3 keys</title>"));
        let today = format!(
            "2026-11-22 (today, so far): {} requests, {} tokens, 3,000 keys</title>",
            thousands(status.totals.requests),
            thousands(status.totals.tokens)
        );
        assert!(page.contains(&today), "{today}");
    }

    /// A small pool's page has no pager and no table per project: one card per key, as always.
    #[test]
    fn a_small_pool_keeps_one_card_per_key() {
        for n in [1, CARDS_SHOWN] {
            let page = overview(&large_pool(n), &no_history(), now());
            assert_eq!(page.matches("<article class=\"card key\">").count(), n);
            assert!(!page.contains("Projects and models") && !page.contains("class=\"pager\""));
            assert!(!page.contains("href="), "no link at all");
        }
        let page = overview(&large_pool(CARDS_SHOWN + 1), &no_history(), now());
        assert!(page.contains("Projects and models (51 keys)") && page.contains("class=\"pager\""));
    }

    #[test]
    fn pages_list_every_key_in_the_key_files_order() {
        let status = large_pool(3000);
        let page = page_of(&status, 13);
        assert!(page.len() < 100_000, "{} bytes", page.len());
        assert!(page.contains("Keys 1,201–1,300 of 3,000 · page 13 of 30"));
        assert_eq!(page.matches("<tr><td class=\"mono\">").count(), KEYS_PER_PAGE);
        let ids: Vec<String> = (1200..1300).map(|i| format!("<code>{i:012x}</code>")).collect();
        let mut at = 0;
        for id in &ids {
            at += page[at..].find(id.as_str()).unwrap_or_else(|| panic!("{id} missing or out of order"));
        }
        assert!(!page.contains(&format!("{:012x}", 1199)) && !page.contains(&format!("{:012x}", 1300)));
        assert!(page.contains("parked until Nov 23 00:00 for gemini-2.5-pro"), "key 1234's state in full");
        for link in [
            "dashboard\">overview",
            "?page=12\">‹ previous",
            "?page=14\">next ›",
            "?page=1\">1",
            "?page=30\">30",
        ] {
            assert!(page.contains(&format!("<a href=\"{link}</a>")), "{link}");
        }
        assert!(page.contains("<strong aria-current=\"page\">13</strong>"));
        assert!(page.contains("<span>…</span><a href=\"?page=11\">11</a>"));
        assert!(!page.contains("?page=10\"") && !page.contains("?page=16\""), "a window, not 30 links");
        assert!(!page.contains("<svg viewBox=\"0 0 640"), "no chart on a page of keys");

        let last = page_of(&status, 30);
        assert!(last.contains("Keys 2,901–3,000 of 3,000 · page 30 of 30") && !last.contains("next ›"));
        let first = page_of(&status, 1);
        assert!(first.contains(&format!("<code>{:012x}</code>", 0)) && !first.contains("‹ previous"));
        let past = page_of(&status, 31);
        assert!(past.contains("No keys on this page: 3,000 keys on 30 pages."));
        assert!(past.contains("<a href=\"?page=30\">‹ previous</a>"));
        for n in [usize::MAX, 1 << 40] {
            assert!(page_of(&status, n).contains("No keys on this page"));
        }
        let small = page_of(&realistic_status(), 1);
        assert!(small.contains("Keys 1–3 of 3 · page 1 of 1") && !small.contains("next ›"));
    }

    #[test]
    fn the_history_is_summed_per_day() {
        let d = daily(&realistic_history().into());
        assert_eq!(d.len(), 5);
        let day = NaiveDate::from_ymd_opt(2026, 11, 20).expect("valid");
        assert_eq!(d[&day], DayUse { requests: 2743, tokens: 4_721_000, keys: 3 });
        let max = DayTotals { requests: u64::MAX, tokens: u64::MAX };
        let zero = DayTotals::default();
        let h = History::from([(
            day,
            BTreeMap::from([("a".into(), max), ("b".into(), max), ("c".into(), zero)]),
        )]);
        assert_eq!(
            daily(&h.into())[&day],
            DayUse { requests: u64::MAX, tokens: u64::MAX, keys: 2 },
            "saturates"
        );
    }

    /// Thousands of labelled projects: the table keeps the rows that need a look and counts the rest.
    #[test]
    fn many_projects_keep_the_table_short() {
        let mut status = large_pool(3000);
        for (i, k) in status.keys.iter_mut().enumerate() {
            k.project = Some(format!("proj-{i:04}"));
        }
        let page = overview(&status, &no_history(), now());
        assert!(page.len() < 150_000, "{} bytes", page.len());
        assert!(page.contains("5,900 more project and model rows"), "6,000 rows, 100 shown");
        assert!(
            page.contains("<tr><td>proj-1234</td><td>gemini-2.5-pro</td><td>1</td><td>1</td>"),
            "the parked row"
        );
    }

    #[test]
    fn escape_handles_markup_quotes_and_ampersands() {
        assert_eq!(
            escape("<script>alert(\"x\")</script> & 'y'"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape("plain …ключ"), "plain …ключ");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn thousands_separators() {
        for (n, s) in [(0, "0"), (999, "999"), (1000, "1,000"), (12345, "12,345"), (1_234_567, "1,234,567")] {
            assert_eq!(thousands(n), s);
        }
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn spans_and_compact_numbers() {
        assert_eq!(span(TimeDelta::minutes(432)), "7 h 12 min");
        assert_eq!(span(TimeDelta::minutes(12)), "12 min");
        assert_eq!(span(TimeDelta::minutes(120)), "2 h");
        assert_eq!(span(TimeDelta::seconds(59)), "less than a minute");
        assert_eq!(span(TimeDelta::seconds(-5)), "less than a minute");
        assert_eq!(span(TimeDelta::hours(51)), "2 d 3 h");
        assert_eq!(compact(950), "950");
        assert_eq!(compact(1200), "1.2k");
        assert_eq!(compact(34_000), "34k");
        assert_eq!(compact(5_600_000), "5.6M");
        assert_eq!(nice_ceiling(0), 0);
        assert_eq!(nice_ceiling(2743), 5000);
        assert_eq!(nice_ceiling(1312), 2000);
        assert_eq!(nice_ceiling(100), 100);
        assert_eq!(nice_ceiling(u64::MAX), u64::MAX);
    }

    #[test]
    fn raw_keys_are_masked_everywhere() {
        let raw = "AIzaSyABCDEFGHIJKLMNOPQRSTUVWXYZ0123456";
        assert_eq!(crate::redact::key_shapes(raw), "AIza…3456");
        assert_eq!(crate::redact::key_shapes(&format!("key={raw}!")), "key=AIza…3456!");
        assert_eq!(crate::redact::key_shapes("AIza…XyZ1"), "AIza…XyZ1");
        assert_eq!(crate::redact::key_shapes("AIzaShort AIza"), "AIzaShort AIza");
        let mut status = realistic_status();
        status.keys[0].project = Some(format!("leaked {raw}"));
        status.keys[1].masked = raw.to_string();
        let html = overview(&status, &no_history(), now());
        assert!(!html.contains("AIzaSy"), "no raw key on the page");
        assert!(html.contains("leaked AIza…3456"));
    }

    #[test]
    fn realistic_page() {
        let html = overview(&realistic_status(), &realistic_history(), now());
        assert!(html.starts_with("<!DOCTYPE html>"));
        for masked in ["AIza…XyZ1", "AIza…Qm8k", "AIza…7tRw"] {
            assert!(html.contains(masked), "{masked}");
        }
        for id in ["3f2a9c1b7e4d", "9b71e0c4a2f5", "c05d8e62f19a"] {
            assert!(html.contains(id), "{id}");
        }
        assert!(html.contains("</span> usable</span>"));
        assert!(html.contains("parked until Nov 23 00:00 for gemini-2.5-pro"));
        assert!(html.contains("cooling until 16:50"));
        assert!(html.contains("disabled: API_KEY_INVALID"));
        assert!(html.contains("resets in 7 h 12 min"));
        assert!(html.contains("2026-11-23 00:00 (UTC-08:00)"));
        assert!(html.contains("1 / 3"), "one of three keys usable");
        assert!(html.contains("1,312"), "requests today with separators");
        assert!(html.contains("2,461,380"));
        assert!(html.contains("1,042 requests · 1,630,400 tokens"));
        assert!(html.contains("16:41</time> (6 min ago)"));
        assert!(html.contains("<svg"));
        assert!(html.contains("<title>2026-11-20: 2,743 requests, 4,721,000 tokens, 3 keys</title>"));
        assert!(html.contains("2026-11-22 (today, so far): 1,312 requests"));
        assert!(html.contains("2026-11-16: no record"));
        assert!(html.contains("Busiest day: Nov\u{a0}20 with 2,743 requests."));
        // The bar of the largest model spans the whole track.
        assert!(html.contains("<rect class=\"f\" width=\"100.0\""));
        // Hostile project name: escaped, never markup.
        assert!(!html.contains("<script"));
        assert!(html.contains("&lt;script&gt;alert(&quot;pwn&quot;)&lt;/script&gt; &amp; &#39;co&#39;"));
        // Self-contained: nothing points outside the page.
        for needle in ["http://", "https://", "src=", "href=", "url(", "@import", "<script", "<link"] {
            assert!(!html.contains(needle), "found {needle}");
        }
    }

    #[test]
    fn masked_value_is_rendered_escaped_and_as_given() {
        let mut status = realistic_status();
        status.keys[0].masked = "AIza…<b>&\"".to_string();
        let html = overview(&status, &no_history(), now());
        assert!(html.contains("<h3 class=\"mono\">AIza…&lt;b&gt;&amp;&quot;</h3>"));
    }

    #[test]
    fn reset_already_due_and_far_away() {
        let late = now() + TimeDelta::hours(8);
        let html = overview(&realistic_status(), &no_history(), late);
        assert!(html.contains("reset due"));
        assert!(html.contains("48 min ago"));
        let early = now() - TimeDelta::hours(30);
        assert!(overview(&realistic_status(), &no_history(), early).contains("resets in 1 d 13 h"));
    }

    #[test]
    fn empty_pool() {
        let status = view(json!({"quota_day": "2026-11-22", "timezone": "America/Los_Angeles",
            "next_reset": "2026-11-23T00:00:00-08:00", "totals": {"requests": 0, "tokens": 0}, "keys": []}));
        let html = overview(&status, &no_history(), now());
        assert!(html.contains("No keys are loaded."));
        assert!(html.contains("0 / 0"));
        assert!(html.contains("No usage recorded in the last 30 days."));
        assert!(html.contains("resets in 7 h 12 min"));
        assert!(html.contains("<svg"));
    }

    #[test]
    fn extremes_never_panic() {
        // The view is typed, so the garbage of old (wrong types, missing fields, unknown states)
        // cannot reach the page; what is left are extreme values.
        let base = realistic_status();
        let mut huge = base.clone();
        huge.totals = crate::status::Totals { requests: u64::MAX, tokens: u64::MAX };
        for k in &mut huge.keys {
            (k.requests, k.tokens) = (u64::MAX, u64::MAX);
            for m in k.models.values_mut() {
                (m.requests, m.tokens) = (u64::MAX, u64::MAX);
            }
        }
        let mut odd = base.clone();
        odd.timezone = "<odd> & \"zone\"".into();
        odd.keys[0].id = String::new();
        odd.keys[0].masked = String::new();
        odd.keys[0].last_used = DateTime::parse_from_rfc3339("2030-01-01T00:00:00+14:00").ok();
        let (pro, flash) = (odd.keys[1].models["gemini-2.5-pro"], odd.keys[1].models["gemini-2.5-flash"]);
        odd.keys[1].models.insert("*".into(), pro);
        odd.keys[1].models.insert("<b>".into(), flash);
        odd.next_reset = DateTime::parse_from_rfc3339("2026-11-23T00:00:00-12:00").expect("valid");
        let mut first_day = base.clone();
        first_day.quota_day = NaiveDate::MIN;
        let mut last_day = base.clone();
        last_day.quota_day = NaiveDate::MAX;
        last_day.next_reset = DateTime::parse_from_rfc3339("9999-12-31T23:59:59+00:00").expect("valid");
        let mut empty = base.clone();
        empty.keys.clear();
        let statuses = [base, huge, odd, first_day, last_day, empty];

        let max = DayTotals { requests: u64::MAX, tokens: u64::MAX };
        let in_window = NaiveDate::from_ymd_opt(2026, 11, 20).expect("valid");
        let histories: [History; 4] = [
            no_history(),
            realistic_history(),
            History::from([(in_window, BTreeMap::from([("a".into(), max), ("b".into(), max)]))]),
            History::from([
                (NaiveDate::MIN, BTreeMap::from([("a".into(), max)])),
                (NaiveDate::MAX, BTreeMap::from([("a".into(), DayTotals::default())])),
                (in_window, BTreeMap::new()),
            ]),
        ];
        for status in &statuses {
            for history in &histories {
                for now in [now(), DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
                    for view in [View::Overview, View::Page(1), View::Page(2), View::Page(usize::MAX)] {
                        let html = render(
                            status,
                            &daily(&history.clone().into()),
                            view,
                            &shown(status, view),
                            now,
                            "",
                        );
                        assert!(html.ends_with("</html>\n"));
                        assert!(html.contains("gemini-key-manager"));
                    }
                }
            }
        }
    }

    #[test]
    fn all_models_park_reads_all_models() {
        let status = view(json!({"quota_day": "2026-11-22", "timezone": "America/Los_Angeles",
            "next_reset": "2026-11-23T00:00:00-08:00", "totals": {"requests": 0, "tokens": 0},
            "keys": [{"id": "a", "masked": "AIza…aaaa", "state": "parked", "requests": 0, "tokens": 0,
                      "models": {"*": {"requests": 0, "tokens": 0, "parked_until": "2026-11-23T00:00:00-08:00"}}}]}));
        let html = overview(&status, &no_history(), now());
        assert!(html.contains("parked until Nov 23 00:00 for all models"));
    }

    /// Writes the realistic example to the temporary directory for a look in a browser
    /// (`gkm-dashboard-example.html`); checks it is one complete document.
    #[test]
    fn write_example_html() {
        let html = overview(&realistic_status(), &realistic_history(), now());
        assert!(html.starts_with("<!DOCTYPE html>") || html.starts_with("<!doctype html>"));
        assert!(html.trim_end().ends_with("</html>"));
        let path = std::env::temp_dir().join("gkm-dashboard-example.html");
        std::fs::write(path, html).expect("write the example page");
    }
}
