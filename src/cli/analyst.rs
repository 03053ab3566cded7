//! The analyst commands: `decode-url` (URL Defense links decoded locally, no API call and no
//! quota) and `lookup` (one threat, campaign or forensics request with a tenant's credentials, for
//! SOAR scripts and analysts).
//!
//! They keep the daemon's rules for output: the result on standard output, each failure on
//! standard error naming what failed, exit 1 when anything failed; and `lookup` keeps invariant 7:
//! the tenant's secret is resolved as the daemon resolves it and never printed, not even inside an
//! error an API sent back.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{bail, Context as _};

use super::load;
use crate::api::intel::{IntelClient, Query};
use crate::urldefense;

/// The longest line `decode-url` reads from standard input. A longer one is reported and skipped
/// as it streams past, never held in memory whole.
const MAX_INPUT_LINE: usize = 64 * 1024;

/// `tapfwd decode-url URL…`: one decoded URL per line, in order; a URL that is not rewritten
/// prints unchanged; a malformed one is reported on stderr and skipped, and the exit code is 1.
/// What a link decodes to is printed through [`urldefense::escape_for_display`], so each URL is
/// one line of text whatever it says. From standard input, a line that is not UTF-8 or is longer
/// than [`MAX_INPUT_LINE`] is named (by number) on stderr and skipped, the rest decoded, and the
/// exit code is 1.
pub(super) fn decode_url(urls: Vec<String>) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = 0usize;
    let mut one = |url: &str, line: Option<usize>, out: &mut dyn Write| -> std::io::Result<()> {
        match urldefense::decode(url) {
            Ok(decoded) => writeln!(out, "{}", urldefense::escape_for_display(&decoded))?,
            Err(e) => {
                failed += 1;
                let at = line.map(|n| format!("line {n}: ")).unwrap_or_default();
                let url = urldefense::escape_for_display(url);
                eprintln!("tapfwd: {at}cannot decode {url}: {e}");
            }
        }
        Ok(())
    };
    let mut unreadable = 0usize;
    if urls.is_empty() {
        let mut input = std::io::stdin().lock();
        let mut buf = Vec::new();
        let mut number = 0usize;
        while let Some(line) = read_bounded_line(&mut input, &mut buf, MAX_INPUT_LINE)? {
            number += 1;
            let text = match line {
                Line::Fits => std::str::from_utf8(&buf).ok(),
                Line::TooLong => None,
            };
            let Some(text) = text else {
                unreadable += 1;
                let why = match line {
                    Line::Fits => "not UTF-8".to_string(),
                    Line::TooLong => format!("longer than {MAX_INPUT_LINE} bytes"),
                };
                eprintln!("tapfwd: line {number}: {why}, skipped");
                continue;
            };
            let url = text.trim();
            if !url.is_empty() {
                one(url, Some(number), &mut out)?;
            }
        }
    } else {
        for url in &urls {
            one(url.trim(), None, &mut out)?;
        }
    }
    out.flush()?;
    let mut problems = Vec::new();
    if unreadable > 0 {
        problems.push(format!("{unreadable} input line(s) could not be read"));
    }
    if failed > 0 {
        problems.push(format!("{failed} URL(s) could not be decoded"));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

/// What [`read_bounded_line`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// The line is in the buffer, without its `\n`.
    Fits,
    /// The line was longer than the bound; it was read past and the buffer is empty.
    TooLong,
}

/// Reads the next line of `input` into `buf` (cleared first), holding at most `max` bytes of it:
/// a longer line is consumed chunk by chunk as it arrives and reported as [`Line::TooLong`]. None
/// at the end of the input.
fn read_bounded_line(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<Line>> {
    buf.clear();
    let mut line = Line::Fits;
    let mut started = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(started.then_some(line));
        }
        started = true;
        let (part, used) = match memchr::memchr(b'\n', chunk) {
            Some(at) => (&chunk[..at], at + 1),
            None => (chunk, chunk.len()),
        };
        let ends = used > part.len();
        if line == Line::Fits {
            if buf.len() + part.len() <= max {
                buf.extend_from_slice(part);
            } else {
                line = Line::TooLong;
                buf.clear();
            }
        }
        input.consume(used);
        if ends {
            return Ok(Some(line));
        }
    }
}

/// What `tapfwd lookup` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LookupKind {
    /// `/v2/threat/summary/{id}` (unthrottled).
    Threat,
    /// `/v2/campaign/{id}`.
    Campaign,
    /// `/v2/forensics` of a threat id, or of a campaign when the id is a campaign's UUID.
    Forensics,
}

/// Whether `id` has a campaign id's shape (a UUID; threat ids are 64 hex digits).
fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `tapfwd lookup --config FILE --tenant NAME threat|campaign|forensics ID`: the API's JSON on
/// standard output, with the tenant's base URL and credentials, read as the daemon reads them.
pub(super) async fn lookup(
    path: &Path,
    tenant: &str,
    kind: LookupKind,
    id: &str,
) -> anyhow::Result<()> {
    let mut config = load(path)?;
    if !config.tenants.contains_key(tenant) {
        bail!("no tenant `{tenant}` in {}", path.display());
    }
    // Only this tenant's secret is read: another tenant's missing one does not matter here.
    config.tenants.retain(|t, _| t == tenant);
    let secrets = config
        .resolve_secrets(&crate::secret::process_env)
        .map_err(|e| anyhow::anyhow!("invalid config {}:\n{e}", path.display()))?;
    let t = &config.tenants[tenant];
    let query = match kind {
        LookupKind::Threat => Query::Threat(id),
        LookupKind::Campaign => Query::Campaign(id),
        LookupKind::Forensics if is_uuid(id) => Query::CampaignForensics(id),
        LookupKind::Forensics => Query::ThreatForensics(id),
    };
    let client = IntelClient::new(config.poll.read_timeout)?;
    let body = client
        .get(t.base_url(), t.principal(), &secrets[tenant], query)
        .await
        .with_context(|| format!("tenant {tenant}: {} {id}", query.what()))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&body)?;
    if !body.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_line_reader_skips_what_is_too_long_without_holding_it() {
        let input = b"short\r\n0123456789abcdef\n\nlast";
        // A reader that hands out 3 bytes at a time, so lines cross chunk boundaries.
        let mut input = std::io::BufReader::with_capacity(3, &input[..]);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(line) = read_bounded_line(&mut input, &mut buf, 8).unwrap() {
            assert!(buf.capacity() <= 16, "{}", buf.capacity());
            got.push((line, String::from_utf8(buf.clone()).unwrap()));
        }
        assert_eq!(
            got,
            [
                (Line::Fits, "short\r".to_string()),
                (Line::TooLong, String::new()),
                (Line::Fits, String::new()),
                (Line::Fits, "last".to_string()),
            ]
        );
    }

    #[test]
    fn forensics_of_a_uuid_is_a_campaigns() {
        assert!(is_uuid("0b9f1cd7-4ee4-4a7e-9d7c-2c3f0d1e5a6b"));
        assert!(!is_uuid(
            "3f4d6ad0c3f9b2b1a7d8e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6"
        ));
        assert!(!is_uuid("0b9f1cd7-4ee4-4a7e-9d7c-2c3f0d1e5a6"));
    }
}
