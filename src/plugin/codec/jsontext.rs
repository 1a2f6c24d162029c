//! JSON text without types: a reader that keeps numbers as their exact text and bounds nesting depth, and
//! the string-literal writer. Both cty JSON forms build on it: the type syntax (`types.rs`) and state values
//! (`json.rs`). It sits below both so neither has to import the other.
//!
//! Hand-written rather than `serde_json::Value`: numbers must keep their exact text (state may hold integers
//! beyond i64 or decimals like `0.1`; serde_json's `arbitrary_precision` would change number handling for every
//! crate in the workspace), and nesting depth must be bounded so hostile input cannot exhaust the stack.

use super::error::{CodecError, ErrorKind};
use super::MAX_DEPTH;

/// A parsed JSON document; numbers keep their text, objects keep their member order (duplicates included).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "bool",
            Json::Number(_) => "number",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }
}

fn malformed(detail: impl Into<String>) -> CodecError {
    CodecError::new(
        Vec::new(),
        ErrorKind::Malformed {
            format: "JSON",
            detail: detail.into(),
        },
    )
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.pos) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn expect_lit(&mut self, lit: &str) -> Result<(), CodecError> {
        if self.b[self.pos..].starts_with(lit.as_bytes()) {
            self.pos += lit.len();
            Ok(())
        } else {
            Err(malformed(format!("unexpected token at byte {}", self.pos)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, CodecError> {
        if depth > MAX_DEPTH {
            return Err(CodecError::new(Vec::new(), ErrorKind::TooDeep(MAX_DEPTH)));
        }
        self.ws();
        match self.peek() {
            None => Err(malformed("unexpected end of input")),
            Some(b'n') => self.expect_lit("null").map(|_| Json::Null),
            Some(b't') => self.expect_lit("true").map(|_| Json::Bool(true)),
            Some(b'f') => self.expect_lit("false").map(|_| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => {
                            return Err(malformed(format!(
                                "expected ',' or ']' at byte {}",
                                self.pos
                            )))
                        }
                    }
                }
            }
            Some(b'{') => {
                self.pos += 1;
                let mut members = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(malformed(format!(
                            "expected a member name at byte {}",
                            self.pos
                        )));
                    }
                    let key = self.string()?;
                    self.ws();
                    if self.peek() != Some(b':') {
                        return Err(malformed(format!("expected ':' at byte {}", self.pos)));
                    }
                    self.pos += 1;
                    let v = self.value(depth + 1)?;
                    members.push((key, v));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Json::Object(members));
                        }
                        _ => {
                            return Err(malformed(format!(
                                "expected ',' or '}}' at byte {}",
                                self.pos
                            )))
                        }
                    }
                }
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            Some(_) => Err(malformed(format!(
                "unexpected character at byte {}",
                self.pos
            ))),
        }
    }

    fn number(&mut self) -> Result<Json, CodecError> {
        let start = self.pos;
        let digits = |r: &mut Self| {
            let s = r.pos;
            while r.peek().is_some_and(|c| c.is_ascii_digit()) {
                r.pos += 1;
            }
            r.pos - s
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        let n = digits(self);
        if n == 0 || (n > 1 && self.b[int_start] == b'0') {
            return Err(malformed(format!("invalid number at byte {start}")));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return Err(malformed(format!("invalid number at byte {start}")));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(malformed(format!("invalid number at byte {start}")));
            }
        }
        // The input was validated as UTF-8 and this range is ASCII.
        let text = String::from_utf8_lossy(&self.b[start..self.pos]).into_owned();
        Ok(Json::Number(text))
    }

    fn hex4(&mut self) -> Result<u32, CodecError> {
        let h = self
            .b
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| malformed("truncated \\u escape"))?;
        let s = std::str::from_utf8(h).map_err(|_| malformed("invalid \\u escape"))?;
        let v = u32::from_str_radix(s, 16).map_err(|_| malformed("invalid \\u escape"))?;
        if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(malformed("invalid \\u escape"));
        }
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, CodecError> {
        self.pos += 1; // opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self
                .peek()
                .ok_or_else(|| malformed("unterminated string"))?;
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = self
                        .peek()
                        .ok_or_else(|| malformed("unterminated string"))?;
                    self.pos += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if !self.b[self.pos..].starts_with(b"\\u") {
                                    return Err(malformed("unpaired surrogate"));
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(malformed("unpaired surrogate"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or_else(|| malformed("unpaired surrogate"))?
                        }
                        _ => return Err(malformed("invalid escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return Err(malformed("control character in string")),
                _ => out.push(c),
            }
        }
        // Raw bytes were copied from validated UTF-8 and escapes are encoded as UTF-8, so this cannot fail.
        String::from_utf8(out).map_err(|_| malformed("invalid UTF-8"))
    }
}

/// Parses a complete JSON document (surrounding whitespace allowed, nothing else after it).
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Json, CodecError> {
    std::str::from_utf8(bytes).map_err(|_| malformed("invalid UTF-8"))?;
    let mut r = Reader { b: bytes, pos: 0 };
    let v = r.value(0)?;
    r.ws();
    if r.pos != bytes.len() {
        return Err(malformed(format!("trailing data at byte {}", r.pos)));
    }
    Ok(v)
}

/// Appends `s` as a JSON string literal.
pub(crate) fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
