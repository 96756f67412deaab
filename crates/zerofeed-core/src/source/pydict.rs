//! A small parser for the subset of Python literal syntax that `np.save` writes in a
//! `.npy` header: `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
//!
//! NumPy reads the header with `ast.literal_eval`; we cannot run Python, and a general
//! Python parser would be a large attack surface for untrusted files. So this accepts
//! what NumPy (and Python's `repr`) actually produce — strings, integers, `True`,
//! `False`, `None`, tuples and lists — and rejects everything else with the byte offset.
//! It works on bytes, not `str`: version 1.0/2.0 headers are Latin-1, and only ASCII can
//! appear in a valid one anyway, so no decoding is needed.
//!
//! Every access goes through `get`, recursion is bounded by [`MAX_DEPTH`], and the input
//! is at most [`super::MAX_HEADER_LEN`] bytes, so no input can panic, overflow the stack
//! or allocate without bound.

use super::npy::{clip, NpyError};

/// Deepest bracket nesting accepted. A structured dtype nests 3 deep; anything near this
/// is garbage, and the bound keeps hostile input (`((((((...`) off the stack.
pub(crate) const MAX_DEPTH: usize = 32;

/// One parsed literal. Strings and integers borrow their raw bytes from the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    /// The bytes between the quotes, escapes left as written (no valid typestr has any).
    Str(&'a [u8]),
    /// A decimal integer: its sign and its ASCII digits (no leading zeros unless `0`).
    Int {
        negative: bool,
        digits: &'a [u8],
    },
    Bool(bool),
    None,
    Tuple(Vec<Value<'a>>),
    List(Vec<Value<'a>>),
}

impl Value<'_> {
    /// What the value is, in words, for "expected X, found Y" messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int { .. } => "an integer",
            Value::Bool(_) => "a boolean",
            Value::None => "None",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
        }
    }
}

/// A `key: value` pair of the header dict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// Raw key bytes (the dict only allows string keys).
    pub key: &'a [u8],
    pub value: Value<'a>,
}

/// Parses `text` as one dict literal followed only by whitespace. `base` is the file
/// offset of `text[0]`, so errors point at the byte in the file.
pub(crate) fn parse_dict(text: &[u8], base: usize) -> Result<Vec<Entry<'_>>, NpyError> {
    let mut p = Parser {
        s: text,
        pos: 0,
        base,
    };
    p.skip_ws();
    p.expect(b'{', "'{' opening the header dict")?;
    let mut entries = Vec::new();
    loop {
        p.skip_ws();
        match p.peek() {
            Some(b'}') => {
                p.pos += 1;
                break;
            }
            Some(b'\'' | b'"') => {}
            _ => return Err(p.error("a quoted key or '}'")),
        }
        let key = match p.string()? {
            Value::Str(key) => key,
            _ => return Err(p.error("a quoted key")),
        };
        p.skip_ws();
        p.expect(b':', "':' after the key")?;
        let value = p.value(1)?;
        entries.push(Entry { key, value });
        p.skip_ws();
        match p.peek() {
            Some(b',') => p.pos += 1,
            Some(b'}') => {
                p.pos += 1;
                break;
            }
            _ => return Err(p.error("',' or '}' after a value")),
        }
    }
    // NumPy pads the header with spaces and ends it with '\n'.
    p.skip_ws();
    if p.pos < p.s.len() {
        return Err(p.error("only spaces and a newline after the closing '}'"));
    }
    Ok(entries)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// Whitespace Python allows inside brackets (implicit line joining).
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0c)) {
            self.pos += 1;
        }
    }

    fn error(&self, expected: &'static str) -> NpyError {
        let found = match self.peek() {
            None => "the end of the header".to_owned(),
            Some(b) if b.is_ascii_graphic() || b == b' ' => format!("'{}'", b as char),
            Some(b) => format!("byte 0x{b:02x}"),
        };
        self.error_found(expected, found)
    }

    fn error_found(&self, expected: &'static str, found: String) -> NpyError {
        NpyError::Syntax {
            offset: self.base.saturating_add(self.pos),
            expected,
            found,
        }
    }

    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), NpyError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    fn slice(&self, start: usize, end: usize) -> Result<&'a [u8], NpyError> {
        // Positions only ever advance past bytes seen by `peek`, so this cannot fail;
        // `get` keeps it that way if the code changes.
        self.s
            .get(start..end)
            .ok_or_else(|| self.error("a well-formed literal"))
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, NpyError> {
        if depth > MAX_DEPTH {
            return Err(self.error("at most 32 nested brackets"));
        }
        self.skip_ws();
        match self.peek() {
            Some(b'\'' | b'"') => self.string(),
            Some(b'-' | b'+' | b'0'..=b'9') => self.integer(),
            Some(b'(') => {
                let (mut items, trailing_comma) = self.sequence(b')', "',' or ')'", depth)?;
                // `(5)` is just 5 in Python; only `(5,)` is a 1-tuple.
                if items.len() == 1 && !trailing_comma {
                    Ok(items.pop().unwrap_or(Value::None))
                } else {
                    Ok(Value::Tuple(items))
                }
            }
            Some(b'[') => Ok(Value::List(self.sequence(b']', "',' or ']'", depth)?.0)),
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'_') => self.name(),
            _ => Err(self.error("a value (a string, integer, True/False, tuple or list)")),
        }
    }

    /// Items of a tuple or list up to `close`, and whether the last item had a comma.
    fn sequence(
        &mut self,
        close: u8,
        expected: &'static str,
        depth: usize,
    ) -> Result<(Vec<Value<'a>>, bool), NpyError> {
        self.pos += 1; // the opening bracket, seen by the caller
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                // Here the sequence is empty or the last item was followed by a comma.
                self.pos += 1;
                let trailing_comma = !items.is_empty();
                return Ok((items, trailing_comma));
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b) if b == close => {
                    self.pos += 1;
                    return Ok((items, false));
                }
                _ => return Err(self.error(expected)),
            }
        }
    }

    fn string(&mut self) -> Result<Value<'a>, NpyError> {
        let quote = self.peek().unwrap_or(b'\'');
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek() {
                None | Some(b'\n') => {
                    return Err(self.error("the closing quote of the string"));
                }
                // Skip the escaped byte so `'it\'s'` stays one string; the raw bytes are
                // kept, which is fine since no valid type string contains a backslash.
                Some(b'\\') => self.pos = (self.pos + 2).min(self.s.len()),
                Some(b) if b == quote => {
                    let text = self.slice(start, self.pos)?;
                    self.pos += 1;
                    return Ok(Value::Str(text));
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    fn integer(&mut self) -> Result<Value<'a>, NpyError> {
        let mut negative = false;
        if let Some(sign @ (b'-' | b'+')) = self.peek() {
            negative = sign == b'-';
            self.pos += 1;
            self.skip_ws(); // Python reads `- 3` as -3
        }
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        let digits = self.slice(start, self.pos)?;
        match digits {
            [] => return Err(self.error("digits of an integer")),
            // Python 3 rejects `007`, so NumPy would too.
            [b'0', _, ..] => {
                self.pos = start;
                return Err(self.error("an integer without leading zeros"));
            }
            _ => {}
        }
        // Python 2 era files carry longs as `3L`; NumPy still reads them.
        if matches!(self.peek(), Some(b'L' | b'l')) {
            self.pos += 1;
        }
        Ok(Value::Int { negative, digits })
    }

    fn name(&mut self) -> Result<Value<'a>, NpyError> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_')
        ) {
            self.pos += 1;
        }
        let name = self.slice(start, self.pos)?;
        match name {
            b"True" => Ok(Value::Bool(true)),
            b"False" => Ok(Value::Bool(false)),
            b"None" => Ok(Value::None),
            _ => {
                self.pos = start;
                let found = format!("the name '{}'", clip(name));
                Err(self.error_found("True, False or None (no other names)", found))
            }
        }
    }
}
