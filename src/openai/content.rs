//! OpenAI message content -> Gemini parts: text, `image_url` (data: URLs -> `inlineData`, Gemini
//! file URIs -> `fileData`), `input_audio`, `file`; and text-only content (system, developer, tool
//! and assistant messages).
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness, and never fetches a URL: any
//! URL that is neither a `data:` URL nor a Gemini file URI is refused with a 400 naming the rule.

use serde_json::{Value, json};

use super::fields::{bad, field, opt_object, opt_str, req_str};
use super::types::TranslateError;

/// Content that must be text: a string, or an array of `text` parts (joined). `refusal` parts
/// are accepted where `allow_refusal` (assistant messages).
pub(super) fn text_content(
    content: Option<&Value>,
    p: &str,
    allow_refusal: bool,
) -> Result<String, TranslateError> {
    let param = format!("{p}.content");
    match content {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let pp = format!("{param}[{j}]");
                let Some(po) = part.as_object() else {
                    return Err(TranslateError::wrong_type(&pp, "an object", part));
                };
                let kind = req_str(po, "type", &format!("{pp}.type"))?;
                match kind {
                    "text" => text.push_str(req_str(po, "text", &format!("{pp}.text"))?),
                    "refusal" if allow_refusal => {
                        text.push_str(req_str(po, "refusal", &format!("{pp}.refusal"))?)
                    }
                    other => {
                        return Err(bad(
                            format!(
                                "Content part type '{other}' is not supported here: this message accepts only text."
                            ),
                            &format!("{pp}.type"),
                        ));
                    }
                }
            }
            Ok(text)
        }
        Some(v) => Err(TranslateError::wrong_type(&param, "a string or an array of content parts", v)),
    }
}

pub(super) fn user_parts(content: Option<&Value>, p: &str) -> Result<Vec<Value>, TranslateError> {
    let param = format!("{p}.content");
    match content {
        None => Err(TranslateError::missing(&param)),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![json!({ "text": s })]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                if let Some(converted) = user_part(part, &format!("{param}[{j}]"))? {
                    out.push(converted);
                }
            }
            Ok(out)
        }
        Some(v) => Err(TranslateError::wrong_type(&param, "a string or an array of content parts", v)),
    }
}

fn user_part(part: &Value, pp: &str) -> Result<Option<Value>, TranslateError> {
    let Some(po) = part.as_object() else {
        return Err(TranslateError::wrong_type(pp, "an object", part));
    };
    let type_param = format!("{pp}.type");
    match req_str(po, "type", &type_param)? {
        "text" => {
            let text = req_str(po, "text", &format!("{pp}.text"))?;
            Ok((!text.is_empty()).then(|| json!({ "text": text })))
        }
        "image_url" => {
            let param = format!("{pp}.image_url");
            let url = match field(po, "image_url") {
                None => return Err(TranslateError::missing(&param)),
                Some(Value::String(url)) => url.as_str(),
                Some(Value::Object(o)) => req_str(o, "url", &format!("{param}.url"))?,
                Some(v) => return Err(TranslateError::wrong_type(&param, "an object", v)),
            };
            url_part(url, &param).map(Some)
        }
        "input_audio" => {
            let param = format!("{pp}.input_audio");
            let audio =
                opt_object(po, "input_audio", &param)?.ok_or_else(|| TranslateError::missing(&param))?;
            let data = req_str(audio, "data", &format!("{param}.data"))?;
            let format_param = format!("{param}.format");
            let format = req_str(audio, "format", &format_param)?.to_ascii_lowercase();
            if format.is_empty() || !format.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            {
                return Err(bad(
                    format!("'{format_param}' must be an audio format such as 'wav' or 'mp3'."),
                    &format_param,
                ));
            }
            Ok(Some(json!({"inlineData": {"mimeType": format!("audio/{format}"), "data": data}})))
        }
        "file" => {
            let param = format!("{pp}.file");
            let file = opt_object(po, "file", &param)?.ok_or_else(|| TranslateError::missing(&param))?;
            if let Some(data) = opt_str(file, "file_data", &format!("{param}.file_data"))? {
                let filename = opt_str(file, "filename", &format!("{param}.filename"))?;
                return file_data_part(data, filename, &format!("{param}.file_data")).map(Some);
            }
            let id_param = format!("{param}.file_id");
            match opt_str(file, "file_id", &id_param)? {
                Some(uri) if is_gemini_file_uri(uri) => Ok(Some(file_uri_part(uri))),
                Some(_) => Err(bad(
                    format!(
                        "'{id_param}' must be a Gemini file URI (https://generativelanguage.googleapis.com/v1beta/files/... or gs://...): OpenAI file ids do not exist on Gemini."
                    ),
                    &id_param,
                )),
                None => Err(bad(format!("'{param}' needs 'file_data' (a data: URL) or 'file_id'."), &param)),
            }
        }
        other => Err(bad(
            format!(
                "Content part type '{other}' is not supported: use 'text', 'image_url', 'input_audio' or 'file'."
            ),
            &type_param,
        )),
    }
}

/// `data:<mime>[;param]*;base64,<data>` -> (mime, data).
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let head = url.get(..5)?;
    if !head.eq_ignore_ascii_case("data:") {
        return None;
    }
    let (meta, data) = url.get(5..)?.split_once(',')?;
    let (mime, encoding) = meta.rsplit_once(';')?;
    if !encoding.trim().eq_ignore_ascii_case("base64") {
        return None;
    }
    let mime = mime.split(';').next().unwrap_or_default().trim();
    (!mime.is_empty() && mime.contains('/') && !data.is_empty()).then_some((mime, data))
}

/// A file URI that Gemini itself resolves: Files API URIs and Cloud Storage URIs.
pub(crate) fn is_gemini_file_uri(url: &str) -> bool {
    url.starts_with("gs://")
        || (url.starts_with("https://generativelanguage.googleapis.com/") && url.contains("/files/"))
}

/// MIME type guessed from a file name's extension, for the few types Gemini accepts.
fn mime_from_name(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "wav" => "audio/wav",
        "mp3" => "audio/mp3",
        "flac" => "audio/flac",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        "mov" => "video/mov",
        "webm" => "video/webm",
        _ => return None,
    })
}

pub(crate) fn file_uri_part(uri: &str) -> Value {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    match mime_from_name(path) {
        Some(mime) => json!({"fileData": {"fileUri": uri, "mimeType": mime}}),
        None => json!({"fileData": { "fileUri": uri }}),
    }
}

pub(crate) fn url_part(url: &str, param: &str) -> Result<Value, TranslateError> {
    if let Some((mime, data)) = parse_data_url(url) {
        return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    if is_gemini_file_uri(url) {
        return Ok(file_uri_part(url));
    }
    Err(bad(
        format!(
            "Unsupported URL in '{param}': only data: URLs (data:<mime>;base64,<data>) and Gemini file URIs (https://generativelanguage.googleapis.com/v1beta/files/... or gs://...) are accepted; the proxy never fetches URLs."
        ),
        param,
    ))
}

pub(crate) fn file_data_part(
    data: &str,
    filename: Option<&str>,
    param: &str,
) -> Result<Value, TranslateError> {
    if let Some((mime, payload)) = parse_data_url(data) {
        return Ok(json!({"inlineData": {"mimeType": mime, "data": payload}}));
    }
    // Bare base64 is accepted when the file name tells the type.
    match filename.and_then(mime_from_name) {
        Some(mime) if !data.is_empty() && !data.contains(':') => {
            Ok(json!({"inlineData": {"mimeType": mime, "data": data}}))
        }
        _ => Err(bad(
            format!(
                "'{param}' must be a data: URL (data:<mime>;base64,<data>), or base64 with a 'filename' whose extension names the type."
            ),
            param,
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::super::test_support::{chat_err as err, chat_ok as ok, user};

    #[test]
    fn multimodal_parts() {
        let call = ok(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://generativelanguage.googleapis.com/v1beta/files/abc123"}},
            {"type": "image_url", "image_url": "gs://bucket/photo.jpg"},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "MP3"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
            {"type": "file", "file": {"file_data": "JVBERi0=", "filename": "b.pdf"}},
            {"type": "file", "file": {"file_id": "https://generativelanguage.googleapis.com/v1beta/files/f9"}}
        ]}]}));
        assert_eq!(
            call.body["contents"][0]["parts"],
            json!([
                {"text": "What is this?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc123"}},
                {"fileData": {"fileUri": "gs://bucket/photo.jpg", "mimeType": "image/jpeg"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
                {"inlineData": {"mimeType": "audio/mp3", "data": "SUQz"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
                {"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/f9"}}
            ])
        );
    }

    #[test]
    fn remote_image_urls_are_refused_naming_the_rule() {
        let e = err(
            json!({"model": "m", "messages": [user("x"), {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}),
            Some("messages[1].content[1].image_url"),
        );
        assert!(e.message.contains("only data: URLs"), "{}", e.message);
        assert!(e.message.contains("never fetches"), "{}", e.message);
        // A data URL that is not base64 is not accepted either.
        err(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:text/plain,hello"}}]}]}),
            Some("messages[0].content[0].image_url"),
        );
        // An OpenAI file id cannot be resolved.
        err(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "file", "file": {"file_id": "file-abc"}}]}]}),
            Some("messages[0].content[0].file.file_id"),
        );
    }
}
