//! The analyst commands: `decode-url` (URL Defense links decoded locally, no API call and no
//! quota) and `lookup` (one threat, campaign or forensics request with a tenant's credentials, for
//! SOAR scripts and analysts).
//!
//! They keep the daemon's rules for output: the result on standard output, each failure on
//! standard error naming what failed, exit 1 when anything failed; and `lookup` keeps invariant 7:
//! the tenant's secret is resolved as the daemon resolves it and never printed, not even inside an
//! error an API sent back.

use std::io::{BufRead as _, Write as _};

use anyhow::bail;

use crate::urldefense;

/// `tapfwd decode-url URL…`: one decoded URL per line, in order; a URL that is not rewritten
/// prints unchanged; a malformed one is reported on stderr and skipped, and the exit code is 1.
pub(super) fn decode_url(urls: Vec<String>) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = 0usize;
    let mut one = |url: &str, out: &mut dyn std::io::Write| -> anyhow::Result<()> {
        match urldefense::decode(url) {
            Ok(decoded) => writeln!(out, "{decoded}")?,
            Err(e) => {
                failed += 1;
                eprintln!("tapfwd: cannot decode {url}: {e}");
            }
        }
        Ok(())
    };
    if urls.is_empty() {
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            let url = line.trim();
            if !url.is_empty() {
                one(url, &mut out)?;
            }
        }
    } else {
        for url in &urls {
            one(url.trim(), &mut out)?;
        }
    }
    out.flush()?;
    if failed > 0 {
        bail!("{failed} URL(s) could not be decoded");
    }
    Ok(())
}
