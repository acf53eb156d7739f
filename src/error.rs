//! `ProxyError`, the one error type of request handling, and its single mapping to a response.
//!
//! Every error a client sees is built here and nowhere else: in Google's shape on native routes,
//! in OpenAI's shape on OpenAI routes. Messages never carry a key or a client token.

use serde_json::json;

/// Which API dialect the client speaks; decides the error body shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Native,
    OpenAi,
    Anthropic,
    Admin,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Native => "native",
            Surface::OpenAi => "openai",
            Surface::Anthropic => "anthropic",
            Surface::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProxyError {
    /// The request is malformed; `param` names the offending field where there is one.
    BadRequest {
        message: String,
        param: Option<String>,
    },
    Unauthorized,
    NotFound {
        message: String,
    },
    MethodNotAllowed,
    TooLarge {
        limit: u64,
    },
    /// Every key is parked, cooling or disabled for the model.
    NoKeyAvailable {
        model: Option<String>,
        retry_after_secs: u64,
        until: Option<String>,
    },
    /// The project holding a resource the request names has no key usable for the model now:
    /// they are parked or cooling (503; no other project can serve it: SPEC §5).
    ResourceBlocked {
        resource: String,
        model: Option<String>,
        retry_after_secs: u64,
        until: Option<String>,
    },
    /// The project holding a resource has no enabled key in the pool (409 FAILED_PRECONDITION,
    /// naming the resource and the key that made it).
    ResourceUnreachable {
        resource: String,
        fingerprint: String,
    },
    /// All workers busy and the queue full.
    Overloaded,
    /// The upstream answered with this status and body, and no other key could do better.
    UpstreamStatus {
        status: u16,
        body: Vec<u8>,
        retry_after: Option<u64>,
    },
    /// The upstream stayed silent past `--read-timeout`.
    UpstreamTimeout,
    /// The upstream could not be reached or broke the connection.
    UpstreamIo {
        message: String,
    },
    Internal {
        message: String,
    },
    /// The request's framing or request line was refused before any upstream attempt (RFC 9112:
    /// 400 ambiguous framing, 414 request line too long, 501 unknown transfer coding).
    Framing {
        status: u16,
        reason: &'static str,
    },
    /// The request body stopped arriving (408).
    BodyTimeout,
    /// The client left while the request was being served; nobody reads the answer.
    ClientGone,
    /// A named client's budget for the day (`rpd` or `tpd`, SPEC §13) is spent: 429 until the
    /// reset, no key used.
    BudgetExceeded {
        client: String,
        what: &'static str,
        limit: u64,
        retry_after_secs: u64,
        until: String,
    },
    /// The model is outside the named client's `models` patterns (403).
    ModelNotAllowed {
        client: String,
        model: String,
    },
    /// Refused on purpose (403): a cross-site form post, a key that is not there to change.
    Forbidden {
        message: String,
    },
}

/// A complete, buffered HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json; charset=UTF-8".into())],
            body: value.to_string().into_bytes(),
        }
    }
}

impl ProxyError {
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> ProxyError {
        ProxyError::BadRequest { message: message.into(), param: param.map(str::to_string) }
    }

    pub fn status(&self) -> u16 {
        match self {
            ProxyError::BadRequest { .. } => 400,
            ProxyError::Unauthorized => 401,
            ProxyError::NotFound { .. } => 404,
            ProxyError::MethodNotAllowed => 405,
            ProxyError::TooLarge { .. } => 413,
            ProxyError::NoKeyAvailable { .. }
            | ProxyError::Overloaded
            | ProxyError::ResourceBlocked { .. } => 503,
            ProxyError::ResourceUnreachable { .. } => 409,
            ProxyError::UpstreamStatus { status, .. } => *status,
            ProxyError::UpstreamTimeout => 504,
            ProxyError::UpstreamIo { .. } => 502,
            ProxyError::Internal { .. } => 500,
            ProxyError::Framing { status, .. } => *status,
            ProxyError::BodyTimeout => 408,
            ProxyError::ClientGone => 499,
            ProxyError::BudgetExceeded { .. } => 429,
            ProxyError::ModelNotAllowed { .. } | ProxyError::Forbidden { .. } => 403,
        }
    }

    /// Answers after which the connection must close: the body was not read (or not whole), so
    /// where the next request would start is unknown.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::TooLarge { .. }
                | ProxyError::Unauthorized
                | ProxyError::Framing { .. }
                | ProxyError::BodyTimeout
        )
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ProxyError::NoKeyAvailable { retry_after_secs, .. }
            | ProxyError::ResourceBlocked { retry_after_secs, .. }
            | ProxyError::BudgetExceeded { retry_after_secs, .. } => Some((*retry_after_secs).max(1)),
            ProxyError::Overloaded => Some(1),
            ProxyError::UpstreamStatus { status: 429 | 503, retry_after, .. } => {
                Some(retry_after.unwrap_or(1).max(1))
            }
            _ => None,
        }
    }

    pub fn message(&self) -> String {
        match self {
            ProxyError::BadRequest { message, .. } | ProxyError::NotFound { message } => message.clone(),
            ProxyError::Unauthorized => {
                "Missing or invalid client token: send it as x-goog-api-key, ?key= or Authorization: Bearer"
                    .into()
            }
            ProxyError::MethodNotAllowed => "Method not allowed on this route".into(),
            ProxyError::TooLarge { limit } => format!("Request body exceeds the limit of {limit} bytes"),
            ProxyError::NoKeyAvailable { model, retry_after_secs, until } => {
                let what = model.as_deref().map(|m| format!("model {m}")).unwrap_or("this request".into());
                match until {
                    Some(t) => format!(
                        "Every API key of the pool is rate-limited or exhausted for {what}; \
                         the first becomes usable again at {t} (in {retry_after_secs} s)"
                    ),
                    None => format!(
                        "Every API key of the pool is disabled for {what}; \
                         retry in {retry_after_secs} s or fix the key file"
                    ),
                }
            }
            ProxyError::ResourceBlocked { resource, model, retry_after_secs, until } => {
                let what = model.as_deref().map(|m| format!(" for model {m}")).unwrap_or_default();
                let when = until.as_deref().map(|t| format!(" at {t}")).unwrap_or_default();
                format!(
                    "{resource} lives in a project whose keys are all rate-limited or exhausted{what}; \
                     the first becomes usable again{when} (in {retry_after_secs} s). No other project \
                     can serve it"
                )
            }
            ProxyError::ResourceUnreachable { resource, fingerprint } => format!(
                "{resource} was made with key {fingerprint}, and no key of its project is enabled in \
                 the pool: enable or re-add a key of that project (no other project can serve it)"
            ),
            ProxyError::Overloaded => {
                "The proxy is overloaded: all workers are busy and the queue is full".into()
            }
            ProxyError::UpstreamStatus { status, body, .. } => upstream_message(*status, body),
            ProxyError::UpstreamTimeout => "The upstream did not answer within the read timeout".into(),
            ProxyError::UpstreamIo { message } => format!("The upstream could not be reached: {message}"),
            ProxyError::Internal { message } => format!("Internal proxy error: {message}"),
            ProxyError::Framing { status: 414, reason } => format!("Request-URI too long: {reason}"),
            ProxyError::Framing { status: 501, reason } => format!("Not implemented: {reason}"),
            ProxyError::Framing { reason, .. } => format!("Malformed request framing: {reason}"),
            ProxyError::BodyTimeout => "The request body stopped arriving before it was complete".into(),
            ProxyError::ClientGone => "The client closed the connection".into(),
            ProxyError::BudgetExceeded { client, what, limit, retry_after_secs, until } => {
                let unit = if *what == "rpd" { "requests" } else { "tokens" };
                format!(
                    "Client {client} has used its budget of {limit} {unit} for the day ({what}); \
                     it renews at {until} (in {retry_after_secs} s)"
                )
            }
            ProxyError::ModelNotAllowed { client, model } => {
                format!("Client {client} may not use model {model} (outside its models patterns)")
            }
            ProxyError::Forbidden { message } => message.clone(),
        }
    }

    /// The one mapping from an error to what the client receives.
    pub fn to_reply(&self, surface: Surface) -> Reply {
        let status = self.status();
        let mut reply = match (self, surface) {
            // A native client gets the upstream's own answer, byte for byte.
            (ProxyError::UpstreamStatus { body, .. }, Surface::Native | Surface::Admin) => Reply {
                status,
                headers: vec![("Content-Type".into(), "application/json; charset=UTF-8".into())],
                body: body.clone(),
            },
            (_, Surface::Native | Surface::Admin) => {
                let name = match self {
                    ProxyError::ResourceUnreachable { .. } => "FAILED_PRECONDITION",
                    _ => google_status(status),
                };
                Reply::json(
                    status,
                    &json!({"error": {"code": status, "message": self.message(), "status": name}}),
                )
            }
            (ProxyError::UpstreamStatus { body, .. }, Surface::OpenAi) => {
                Reply::json(status, &crate::openai::gemini_error_to_openai(status, body))
            }
            (ProxyError::UpstreamStatus { body, .. }, Surface::Anthropic) => {
                Reply::json(status, &crate::anthropic::gemini_error_to_anthropic(status, body))
            }
            (_, Surface::Anthropic) => {
                Reply::json(status, &crate::anthropic::anthropic_error_body(status, &self.message()))
            }
            (_, Surface::OpenAi) => {
                let param = match self {
                    ProxyError::BadRequest { param, .. } => param.as_deref(),
                    _ => None,
                };
                Reply::json(
                    status,
                    &crate::openai::openai_error_body(status, &self.message(), param, openai_code(self)),
                )
            }
        };
        if let Some(secs) = self.retry_after() {
            reply.headers.push(("Retry-After".into(), secs.to_string()));
        }
        if matches!(self, ProxyError::Unauthorized) && surface == Surface::Admin {
            reply.headers.push(("WWW-Authenticate".into(), "Basic realm=\"gemini-key-manager\"".into()));
        }
        reply
    }
}

/// Google's canonical status name for an HTTP status.
pub fn google_status(status: u16) -> &'static str {
    match status {
        400 | 413 | 414 | 431 => "INVALID_ARGUMENT",
        408 => "DEADLINE_EXCEEDED",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 => "UNIMPLEMENTED",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

fn openai_code(e: &ProxyError) -> Option<&'static str> {
    Some(match e {
        ProxyError::Unauthorized => "invalid_api_key",
        ProxyError::NotFound { .. } => "not_found",
        ProxyError::TooLarge { .. } => "request_too_large",
        ProxyError::NoKeyAvailable { .. } | ProxyError::ResourceBlocked { .. } => "no_key_available",
        ProxyError::ResourceUnreachable { .. } => "failed_precondition",
        ProxyError::Overloaded => "overloaded",
        ProxyError::UpstreamTimeout => "upstream_timeout",
        ProxyError::UpstreamIo { .. } => "upstream_unreachable",
        ProxyError::UpstreamStatus { status: 429, .. } => "rate_limit_exceeded",
        ProxyError::BudgetExceeded { .. } => "client_budget_exceeded",
        ProxyError::ModelNotAllowed { .. } => "model_not_allowed",
        ProxyError::Forbidden { .. } => "forbidden",
        ProxyError::BodyTimeout => "request_timeout",
        ProxyError::Framing { .. } => "invalid_request",
        _ => return None,
    })
}

/// The `error.message` of a Google error body, or a short description of any other answer.
fn upstream_message(status: u16, body: &[u8]) -> String {
    crate::google_error::GoogleError::parse(body)
        .map(|e| e.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("The upstream answered HTTP {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Reply) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    #[test]
    fn native_errors_have_googles_shape() {
        let cases: &[(ProxyError, u16, &str)] = &[
            (ProxyError::Unauthorized, 401, "UNAUTHENTICATED"),
            (ProxyError::NotFound { message: "no such route".into() }, 404, "NOT_FOUND"),
            (ProxyError::TooLarge { limit: 10 }, 413, "INVALID_ARGUMENT"),
            (ProxyError::UpstreamIo { message: "refused".into() }, 502, "UNAVAILABLE"),
            (ProxyError::Overloaded, 503, "UNAVAILABLE"),
            (ProxyError::UpstreamTimeout, 504, "DEADLINE_EXCEEDED"),
        ];
        for (e, status, name) in cases {
            let r = e.to_reply(Surface::Native);
            assert_eq!(r.status, *status);
            let b = body(&r);
            assert_eq!(b["error"]["code"], *status);
            assert_eq!(b["error"]["status"], *name);
            assert!(b["error"]["message"].as_str().unwrap().len() > 5);
        }
    }

    #[test]
    fn every_503_and_429_carries_retry_after() {
        let e = ProxyError::NoKeyAvailable {
            model: Some("gemini-2.5-flash".into()),
            retry_after_secs: 42,
            until: Some("2026-11-23T00:00:00-08:00".into()),
        };
        for s in [Surface::Native, Surface::OpenAi] {
            let r = e.to_reply(s);
            assert_eq!((r.status, header(&r, "retry-after")), (503, Some("42")));
            let msg = body(&r).to_string();
            assert!(msg.contains("gemini-2.5-flash") && msg.contains("2026-11-23T00:00:00-08:00"));
        }
        assert_eq!(header(&ProxyError::Overloaded.to_reply(Surface::Native), "retry-after"), Some("1"));
        let up = ProxyError::UpstreamStatus { status: 429, body: b"{}".to_vec(), retry_after: Some(26) };
        assert_eq!(header(&up.to_reply(Surface::Native), "retry-after"), Some("26"));
        let up = ProxyError::UpstreamStatus { status: 503, body: b"{}".to_vec(), retry_after: None };
        assert_eq!(header(&up.to_reply(Surface::OpenAi), "retry-after"), Some("1"));
    }

    #[test]
    fn openai_errors_have_openais_shape() {
        let r = ProxyError::bad_request("messages is required", Some("messages")).to_reply(Surface::OpenAi);
        let b = body(&r);
        assert_eq!(r.status, 400);
        assert_eq!(b["error"]["param"], "messages");
        assert_eq!(b["error"]["type"], "invalid_request_error");
        let b = body(&ProxyError::Unauthorized.to_reply(Surface::OpenAi));
        assert_eq!(b["error"]["code"], "invalid_api_key");
        assert!(b["error"]["param"].is_null());
    }

    #[test]
    fn upstream_answers_pass_through_on_native_routes() {
        let raw = br#"{"error":{"code":400,"message":"bad field","status":"INVALID_ARGUMENT"}}"#.to_vec();
        let e = ProxyError::UpstreamStatus { status: 400, body: raw.clone(), retry_after: None };
        assert_eq!(e.to_reply(Surface::Native).body, raw);
        assert_eq!(body(&e.to_reply(Surface::OpenAi))["error"]["message"], "bad field");
    }
}
