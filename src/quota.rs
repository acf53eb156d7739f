//! Classification of upstream answers (placeholder until the quota-aware pool lands).

/// What an upstream answer means for the key that got it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success,
    QuotaPerDay,
    QuotaPerMinute { retry: std::time::Duration },
    RateLimited,
    KeyInvalid { reason: String },
    Transient,
    ClientError,
}

pub fn classify(status: u16, _body: &[u8]) -> Outcome {
    match status {
        200..=299 => Outcome::Success,
        429 => Outcome::RateLimited,
        500 | 502 | 503 | 504 => Outcome::Transient,
        _ => Outcome::ClientError,
    }
}

pub fn model_from_path(path: &str) -> Option<String> {
    let path = path.split('?').next()?;
    let i = path.find("/models/")?;
    let rest = &path[i + 8..];
    let model = rest.split([':', '/']).next()?;
    (!model.is_empty()).then(|| model.to_string())
}

pub fn usage_tokens(v: &serde_json::Value) -> Option<u64> {
    v.get("usageMetadata")?.get("totalTokenCount")?.as_u64()
}
