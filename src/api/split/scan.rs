//! Inside an event element: finding where it ends, and turning its bytes into an event.
//!
//! While the push parser in `mod.rs` sees an event array's element open, [`Splitter::scan_event`]
//! takes over: it tracks only strings, escapes and bracket depth (skipping through strings a word
//! at a time, long ones with `memchr`), appending the bytes to the [`BatchBuilder`] as they come,
//! so an element may span any number of chunks. When the element closes,
//! [`Splitter::complete_event`] checks it as UTF-8, has serde_json parse it once (validating it
//! and reading its time), hashes its final bytes into its key and records it. It keeps invariant
//! 5: the bytes are the API's own, except that an element spanning several lines outside its
//! strings has that insignificant whitespace removed ([`compact`]), string contents untouched.
//! Such an element is validated as sent before it is compacted: removing whitespace from invalid
//! JSON can make it valid (`[1\n2]` becomes `[12]`), and that would forward a value never sent.

use bytes::BytesMut;

use super::times::{Customer, EventTimes};
use super::{BatchBuilder, SplitError, Splitter, State};
use crate::event::{EventKey, EventKind, EventMeta};

/// The scan of the event element in progress.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct EventScan {
    in_string: bool,
    /// The previous byte inside a string was an unescaped backslash.
    escape: bool,
    /// Open brackets inside the element.
    depth: usize,
    /// A `\n` or `\r` was seen outside strings.
    multiline: bool,
    /// Bytes of the element seen so far, as sent.
    len: u64,
    /// Over the size limit: bytes are no longer kept, only counted.
    oversize: bool,
}

impl Splitter {
    /// Scans the event element from `chunk[from..]`, keeping its bytes in `out`. Returns where
    /// scanning stopped: just after the element when it completed, else the end of the chunk.
    pub(super) fn scan_event(
        &mut self,
        chunk: &[u8],
        from: usize,
        out: &mut BatchBuilder,
    ) -> Result<usize, SplitError> {
        let mut s = self.scan;
        let mut i = from;
        let end = chunk.len();
        let mut closed = false;
        while i < end {
            if s.in_string {
                if s.escape {
                    s.escape = false;
                    i += 1;
                    continue;
                }
                match find_quote_or_backslash(&chunk[i..]) {
                    None => i = end,
                    Some(k) => {
                        i += k;
                        if chunk[i] == b'"' {
                            s.in_string = false;
                        } else {
                            s.escape = true;
                        }
                        i += 1;
                    }
                }
                continue;
            }
            let b = chunk[i];
            i += 1;
            match b {
                b'"' => s.in_string = true,
                b'{' | b'[' => {
                    s.depth += 1;
                    if self.stack.len() + s.depth > self.limits.max_depth {
                        return Err(SplitError::TooDeep {
                            limit: self.limits.max_depth,
                            offset: self.pos + (i - 1) as u64,
                        });
                    }
                }
                b'}' | b']' => {
                    s.depth -= 1;
                    if s.depth == 0 {
                        closed = true;
                        break;
                    }
                }
                b'\n' | b'\r' => s.multiline = true,
                _ => {}
            }
        }
        let seen = &chunk[from..i];
        s.len += seen.len() as u64;
        if !s.oversize {
            if s.len > self.limits.max_event_bytes as u64 {
                s.oversize = true;
                out.drop_partial();
            } else {
                out.buf.extend_from_slice(seen);
            }
        }
        self.scan = s;
        if closed {
            self.complete_event(out)?;
            self.state = State::CommaOrClose;
        }
        Ok(i)
    }

    /// Validates the element now at the end of `out` and records it as a complete event.
    fn complete_event(&mut self, out: &mut BatchBuilder) -> Result<(), SplitError> {
        let (kind, index) = (self.kind, self.index);
        if self.scan.oversize {
            return Err(SplitError::EventTooLarge {
                kind,
                index,
                len: self.scan.len,
                limit: self.limits.max_event_bytes,
            });
        }
        let start = out.complete;
        if self.scan.multiline {
            // Validated as sent before compacting: removing whitespace would join the tokens of
            // an invalid event into a valid one (`- 1` into `-1`, `[1\n2]` into `[12]`).
            read_event(&out.buf[start..], kind, index)?;
            compact(&mut out.buf, start);
        }
        let raw = &out.buf[start..];
        let times = read_event(raw, kind, index)?;
        let time_ms = times.time_ms(kind);
        let key = EventKey::of(raw);
        let len = raw.len();
        let (Ok(start32), Ok(len32)) = (u32::try_from(start), u32::try_from(len)) else {
            return Err(SplitError::BuilderFull);
        };
        if start32.checked_add(len32).is_none() {
            return Err(SplitError::BuilderFull);
        }
        let customer = match &times.customer {
            Customer::Id(c) => Some(super::intern_customer(&mut out.last_customer, c)),
            Customer::None => None,
            Customer::Invalid => {
                self.invalid_customers += 1;
                None
            }
        };
        out.events.push(EventMeta {
            kind,
            start: start32,
            len: len32,
            key,
            time_ms,
            customer,
        });
        out.complete = start + len;
        self.events += 1;
        Ok(())
    }
}

/// Checks the event `raw` as UTF-8 and has serde_json read it (validating it whole) for its
/// times.
fn read_event(raw: &[u8], kind: EventKind, index: u64) -> Result<EventTimes<'_>, SplitError> {
    let text = std::str::from_utf8(raw).map_err(|e| SplitError::EventNotUtf8 {
        kind,
        index,
        offset: e.valid_up_to(),
    })?;
    // Checked as UTF-8 as a whole above, so serde_json need not check each string again.
    EventTimes::read(text).map_err(|detail| SplitError::EventInvalid {
        kind,
        index,
        detail,
    })
}

/// The first `"` or `\\` in `s`.
///
/// Most strings of an event are short keys and values, for which memchr's setup costs more than
/// the search: look 8 bytes at a time first, and hand long strings to memchr.
#[inline]
fn find_quote_or_backslash(s: &[u8]) -> Option<usize> {
    const SHORT: usize = 32;
    let mut i = 0;
    while i + 8 <= s.len() {
        if i >= SHORT {
            return memchr::memchr2(b'"', b'\\', &s[i..]).map(|k| i + k);
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&s[i..i + 8]);
        let word = u64::from_le_bytes(word);
        let found = zero_bytes(word ^ splat(b'"')) | zero_bytes(word ^ splat(b'\\'));
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|k| i + k)
}

/// `b` in every byte of a word.
#[inline]
const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// A word whose lowest set bit is the high bit of the lowest zero byte of `w` (bits above it may
/// be set falsely by borrows, so only the lowest counts); 0 when no byte is zero.
#[inline]
const fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(splat(1)) & !w & splat(0x80)
}

/// Removes whitespace outside strings from `buf[start..]`, in place.
fn compact(buf: &mut BytesMut, start: usize) {
    let mut w = start;
    let mut in_string = false;
    let mut escape = false;
    for r in start..buf.len() {
        let b = buf[r];
        if in_string {
            if escape {
                escape = false;
            } else if b == b'\\' {
                escape = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => continue,
                b'"' => in_string = true,
                _ => {}
            }
        }
        buf[w] = b;
        w += 1;
    }
    buf.truncate(w);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_search_finds_the_first_quote_or_backslash_at_any_length() {
        for len in 0..100 {
            let hay = vec![b'a'; len];
            assert_eq!(find_quote_or_backslash(&hay), None);
            for at in 0..len {
                for (needle, other) in [(b'"', b'\\'), (b'\\', b'"')] {
                    let mut hay = hay.clone();
                    hay[at] = needle;
                    if at + 1 < len {
                        hay[len - 1] = other;
                    }
                    assert_eq!(find_quote_or_backslash(&hay), Some(at), "len {len} at {at}");
                }
            }
        }
        assert_eq!(find_quote_or_backslash("é😀\"".as_bytes()), Some(6));
    }
}
