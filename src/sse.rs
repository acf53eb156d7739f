//! Incremental framing of Gemini's two streaming forms: Server-Sent Events (`alt=sse`) and the
//! JSON array of `streamGenerateContent` without `alt`. Bytes go in as they arrive; complete
//! event payloads (JSON texts) come out.
//!
//! Also [`Gap`]: where, in the bytes a client was sent, a keep-alive may go without breaking the
//! framing (SPEC §14: an SSE comment between events, whitespace between JSON-array elements).
//!
//! Pure: no I/O, no locks, no clock. Memory is bounded: an event larger than the limit is
//! dropped (and counted) instead of growing the buffer without end.

/// Default limit of one event's size.
pub const MAX_EVENT_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Unknown,
    Sse,
    JsonArray,
}

/// Splits a byte stream into event payloads.
#[derive(Debug)]
pub struct Framer {
    mode: Mode,
    buf: Vec<u8>,
    max_event: usize,
    /// Events dropped for being larger than `max_event`.
    pub oversized: usize,
    // JSON-array scanning state.
    depth: usize,
    in_string: bool,
    escape: bool,
    skipping: bool,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(MAX_EVENT_BYTES)
    }
}

impl Framer {
    pub fn new(max_event: usize) -> Framer {
        Framer {
            mode: Mode::Unknown,
            buf: Vec::new(),
            max_event,
            oversized: 0,
            depth: 0,
            in_string: false,
            escape: false,
            skipping: false,
        }
    }

    /// Feed bytes; returns the payloads completed by them, in order.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut data = data;
        if self.mode == Mode::Unknown {
            let start = data.iter().position(|b| !b.is_ascii_whitespace());
            match start {
                None => return out,
                Some(i) => {
                    self.mode = if data[i] == b'[' { Mode::JsonArray } else { Mode::Sse };
                    if self.mode == Mode::JsonArray {
                        data = &data[i + 1..];
                    }
                }
            }
        }
        match self.mode {
            Mode::Sse => self.feed_sse(data, &mut out),
            Mode::JsonArray => self.feed_array(data, &mut out),
            Mode::Unknown => {}
        }
        out
    }

    fn feed_sse(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) {
        for &b in data {
            if self.skipping {
                // Inside an oversized event: keep only the last bytes, to see its blank line.
                self.buf.push(b);
                if self.buf.ends_with(b"\n\n") || self.buf.ends_with(b"\n\r\n") {
                    self.skipping = false;
                    self.buf.clear();
                } else if self.buf.len() > 3 {
                    let keep = self.buf.len() - 3;
                    self.buf.drain(..keep);
                }
                continue;
            }
            self.buf.push(b);
            if b == b'\n' && (self.buf.ends_with(b"\n\n") || self.buf.ends_with(b"\n\r\n")) {
                if let Some(payload) = sse_payload(&self.buf) {
                    out.push(payload);
                }
                self.buf.clear();
            } else if self.buf.len() > self.max_event {
                // Regression (fuzzing): the blank line that ends this event may already have
                // begun; keep the last bytes so that the next event is not swallowed too.
                self.oversized += 1;
                self.skipping = true;
                let keep = self.buf.len().saturating_sub(3);
                self.buf.drain(..keep);
            }
        }
    }

    fn feed_array(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) {
        for &b in data {
            if self.depth == 0 {
                // Between elements: separators, whitespace and the closing bracket.
                if b == b'{' || b == b'[' {
                    self.depth = 1;
                    self.skipping = false;
                    self.buf.clear();
                    self.buf.push(b);
                }
                continue;
            }
            if !self.skipping {
                self.buf.push(b);
                // Checked before a closing bracket can emit the element (an element one byte
                // past the limit got through).
                if self.buf.len() > self.max_event {
                    self.oversized += 1;
                    self.skipping = true;
                    self.buf = Vec::new();
                }
            }
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 && !self.skipping {
                            out.push(std::mem::take(&mut self.buf));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The joined `data:` lines of one SSE event, if it has any.
fn sse_payload(event: &[u8]) -> Option<Vec<u8>> {
    let mut payload: Option<Vec<u8>> = None;
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            let p = payload.get_or_insert_with(Vec::new);
            if !p.is_empty() {
                p.push(b'\n');
            }
            p.extend_from_slice(rest);
        }
    }
    payload
}

/// The keep-alive a stream of this content type takes (SPEC §14), if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// `: keep-alive` comment lines between events.
    Sse,
    /// A newline between elements.
    JsonArray,
}

impl KeepAlive {
    /// By the answer's `Content-Type`: SSE, or JSON (a JSON-array stream); else none.
    pub fn for_content_type(content_type: &str) -> Option<KeepAlive> {
        let ct = content_type.to_ascii_lowercase();
        if ct.starts_with("text/event-stream") {
            Some(KeepAlive::Sse)
        } else if ct.contains("json") {
            Some(KeepAlive::JsonArray)
        } else {
            None
        }
    }

    pub fn bytes(self) -> &'static [u8] {
        match self {
            KeepAlive::Sse => b": keep-alive\n\n",
            KeepAlive::JsonArray => b"\n",
        }
    }
}

/// Follows the bytes sent to a client to tell whether a keep-alive may go now: on SSE after a
/// complete event (a blank line), on a JSON array outside every element (after `[`, `,` or an
/// element's closing `}` / `]` at depth one), never inside a string.
#[derive(Debug, Clone)]
pub struct Gap {
    style: KeepAlive,
    /// Bytes sent so far (only whether any were matters).
    started: bool,
    /// SSE: the last bytes sent.
    tail: [u8; 4],
    // JSON: scanning state.
    depth: u32,
    in_string: bool,
    escape: bool,
    last: u8,
}

impl Gap {
    pub fn new(style: KeepAlive) -> Gap {
        Gap { style, started: false, tail: [0; 4], depth: 0, in_string: false, escape: false, last: 0 }
    }

    /// Bytes that went to the client.
    pub fn sent(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.started = true;
        match self.style {
            KeepAlive::Sse => {
                for &b in data.iter().rev().take(4).rev() {
                    self.tail.rotate_left(1);
                    self.tail[3] = b;
                }
            }
            KeepAlive::JsonArray => {
                for &b in data {
                    if self.in_string {
                        match (self.escape, b) {
                            (true, _) => self.escape = false,
                            (false, b'\\') => self.escape = true,
                            (false, b'"') => self.in_string = false,
                            _ => {}
                        }
                        self.last = b'"';
                        continue;
                    }
                    match b {
                        b'"' => self.in_string = true,
                        b'[' | b'{' => self.depth = self.depth.saturating_add(1),
                        b']' | b'}' => self.depth = self.depth.saturating_sub(1),
                        _ => {}
                    }
                    if !b.is_ascii_whitespace() {
                        self.last = b;
                    }
                }
            }
        }
    }

    /// May a keep-alive go now?
    pub fn open(&self) -> bool {
        if !self.started {
            return true;
        }
        match self.style {
            KeepAlive::Sse => {
                self.tail[2..] == *b"\n\n" || self.tail == *b"\r\n\r\n" || self.tail[2..] == *b"\r\r"
            }
            KeepAlive::JsonArray => {
                !self.in_string && (self.depth == 1 && matches!(self.last, b'[' | b',' | b'}' | b']'))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(framer: &mut Framer, pieces: &[&[u8]]) -> Vec<String> {
        pieces.iter().flat_map(|p| framer.feed(p)).map(|p| String::from_utf8(p).unwrap()).collect()
    }

    #[test]
    fn sse_events_with_crlf_split_anywhere() {
        let stream = b"data: {\"a\":1}\r\n\r\ndata: {\"b\":2}\r\n\r\n: comment\n\nevent: x\ndata: [DONE]\n\n";
        for split in 0..stream.len() {
            let mut f = Framer::default();
            let got = all(&mut f, &[&stream[..split], &stream[split..]]);
            assert_eq!(got, vec!["{\"a\":1}", "{\"b\":2}", "[DONE]"], "split at {split}");
        }
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut f = Framer::default();
        assert_eq!(all(&mut f, &[b"data: {\ndata: \"x\":1}\n\n"]), vec!["{\n\"x\":1}"]);
    }

    #[test]
    fn json_array_elements_split_anywhere() {
        let stream = b"[{\"t\":\"a}b\\\"\"}\r\n,{\"n\":[1,{\"m\":2}]}\r\n]";
        for split in 0..stream.len() {
            let mut f = Framer::default();
            let got = all(&mut f, &[&stream[..split], &stream[split..]]);
            assert_eq!(got, vec!["{\"t\":\"a}b\\\"\"}", "{\"n\":[1,{\"m\":2}]}"], "split at {split}");
        }
    }

    #[test]
    fn oversized_events_are_dropped_not_buffered() {
        let mut f = Framer::new(16);
        let got = all(&mut f, &[b"data: 0123456789012345678901234\n\ndata: ok\n\n"]);
        assert_eq!(got, vec!["ok"]);
        assert_eq!(f.oversized, 1);
        let mut f = Framer::new(16);
        let got = all(&mut f, &[b"[{\"x\":\"0123456789012345678901234\"},{\"y\":1}]"]);
        assert_eq!(got, vec!["{\"y\":1}"]);
        assert_eq!(f.oversized, 1);
    }

    #[test]
    fn keep_alives_go_only_between_events_and_elements() {
        // (style, pieces sent, may a keep-alive go after them)
        let cases: &[(KeepAlive, &[&str], bool)] = &[
            (KeepAlive::Sse, &[], true),
            (KeepAlive::Sse, &["data: {}\n\n"], true),
            (KeepAlive::Sse, &["data: {}\r\n\r\n"], true),
            (KeepAlive::Sse, &["data: {}\r\n", "\r\n"], true),
            (KeepAlive::Sse, &["data: {\"a\":"], false),
            (KeepAlive::Sse, &["data: {}\n"], false),
            (KeepAlive::JsonArray, &[], true),
            (KeepAlive::JsonArray, &["[{\"a\": 1}"], true),
            (KeepAlive::JsonArray, &["[{\"a\": 1}", "\n,\r\n"], true),
            (KeepAlive::JsonArray, &["["], true),
            (KeepAlive::JsonArray, &["[{\"a\": 1"], false),
            (KeepAlive::JsonArray, &["[{\"a\": \"x}"], false),
            (KeepAlive::JsonArray, &["[{\"a\": \"x\\\"}\"", "}"], true),
            (KeepAlive::JsonArray, &["[{\"a\": [1]"], false),
            (KeepAlive::JsonArray, &["[{}]"], false),
        ];
        for (style, pieces, open) in cases {
            let mut g = Gap::new(*style);
            for p in *pieces {
                g.sent(p.as_bytes());
            }
            assert_eq!(g.open(), *open, "{style:?} after {pieces:?}");
        }
        assert_eq!(KeepAlive::for_content_type("text/event-stream; charset=utf-8"), Some(KeepAlive::Sse));
        assert_eq!(
            KeepAlive::for_content_type("application/json; charset=UTF-8"),
            Some(KeepAlive::JsonArray)
        );
        assert_eq!(KeepAlive::for_content_type("application/octet-stream"), None);
    }
}
