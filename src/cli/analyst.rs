//! The analyst commands: `decode-url` (URL Defense links decoded locally, no API call and no
//! quota) and `lookup` (one threat, campaign or forensics request with a tenant's credentials, for
//! SOAR scripts and analysts).
//!
//! They keep the daemon's rules for output: the result on standard output, each failure on
//! standard error naming what failed, exit 1 when anything failed; and `lookup` keeps invariant 7:
//! the tenant's secret is resolved as the daemon resolves it and never printed, not even inside an
//! error an API sent back.

use std::io::{BufRead as _, Write as _};
use std::path::Path;

use anyhow::{bail, Context as _};

use super::load;
use crate::api::intel::{IntelClient, Query};
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
    fn forensics_of_a_uuid_is_a_campaigns() {
        assert!(is_uuid("0b9f1cd7-4ee4-4a7e-9d7c-2c3f0d1e5a6b"));
        assert!(!is_uuid(
            "3f4d6ad0c3f9b2b1a7d8e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6"
        ));
        assert!(!is_uuid("0b9f1cd7-4ee4-4a7e-9d7c-2c3f0d1e5a6"));
    }
}
