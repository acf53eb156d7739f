//! Fallback models (`--model-fallback 'gemini-2.5-pro>gemini-2.5-flash>gemini-2.5-flash-lite'`,
//! SPEC §14): when no key can serve a model, the next model of its chain that can serves the
//! request. Several chains, comma-separated; a model's fallbacks are the models after it in the
//! first chain that names it.
//!
//! Pure: parsing and lookup only.

/// The configured chains, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fallbacks {
    chains: Vec<Vec<String>>,
}

impl Fallbacks {
    /// Parse `A>B>C,X>Y`; an empty text is no fallback.
    pub fn parse(text: &str) -> Result<Fallbacks, String> {
        let mut chains = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let chain: Vec<String> =
                item.split('>').map(|m| m.trim().trim_start_matches("models/").to_string()).collect();
            if chain.len() < 2 {
                return Err(format!("'{item}' is not a chain A>B"));
            }
            for model in &chain {
                let valid = !model.is_empty()
                    && model.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
                if !valid {
                    return Err(format!("'{model}' in '{item}' is not a Gemini model id"));
                }
            }
            for (i, model) in chain.iter().enumerate() {
                if chain[..i].contains(model) {
                    return Err(format!("'{item}' names {model} twice"));
                }
            }
            chains.push(chain);
        }
        Ok(Fallbacks { chains })
    }

    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }

    /// The models that stand in for `model`, in order (empty when it is in no chain).
    pub fn after(&self, model: &str) -> &[String] {
        for chain in &self.chains {
            if let Some(i) = chain.iter().position(|m| m == model) {
                return &chain[i + 1..];
            }
        }
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_parse_and_name_what_follows() {
        let f = Fallbacks::parse("gemini-2.5-pro>gemini-2.5-flash>gemini-2.5-flash-lite, a>b").unwrap();
        assert_eq!(f.after("gemini-2.5-pro"), ["gemini-2.5-flash", "gemini-2.5-flash-lite"]);
        assert_eq!(f.after("gemini-2.5-flash"), ["gemini-2.5-flash-lite"]);
        assert!(f.after("gemini-2.5-flash-lite").is_empty());
        assert!(f.after("other").is_empty());
        assert_eq!(f.after("a"), ["b"]);
        assert!(Fallbacks::parse("").unwrap().is_empty());
        for bad in ["a", "a>", "a>b c", "a>b>a", ">b"] {
            assert!(Fallbacks::parse(bad).is_err(), "{bad}");
        }
    }
}
