//! The Insider Threat Management report API (more-feeds.md):
//! `GET <base_url>/v2/apis/report;realm=observeit/reports/<report>/data?since=<risingValue>&limit=N`,
//! sent through [`super::oauth::BearerClient`] with the tenant's token (scope `*`).
//!
//! A page holds the records whose `risingValue` is at least `since` (inclusive: the last record
//! of a page comes back first on the next), oldest first, at most `limit`; the records are kept
//! as the bytes the API sent (invariant 5), in `data` (or an array at the top). tapfwd reads a
//! record's `risingValue` as a number of milliseconds since the epoch (Elastic's integration
//! starts its cursor from a time that way; the real API's unit is not documented publicly).

use serde::Deserialize;

use super::ApiError;

/// The OAuth2 scope asked for.
pub const SCOPE: &str = "*";

/// The URL of a page of `report` from `since` under `base_url`.
pub fn url(base_url: &str, report: &str, since: i64, limit: u32) -> Result<reqwest::Url, ApiError> {
    let mut url = reqwest::Url::parse(&format!(
        "{}/v2/apis/report;realm=observeit/reports/{report}/data",
        base_url.trim_end_matches('/')
    ))
    .map_err(|_| ApiError::BadUrl(base_url.to_string()))?;
    url.query_pairs_mut()
        .append_pair("since", &since.to_string())
        .append_pair("limit", &limit.to_string());
    Ok(url)
}

/// One record of a page: its bytes and its cursor.
#[derive(Debug)]
pub struct Record<'a> {
    pub raw: &'a serde_json::value::RawValue,
    pub rising: i64,
}

#[derive(Deserialize)]
struct Object<'a> {
    #[serde(borrow)]
    data: Vec<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct Rising {
    #[serde(rename = "risingValue")]
    rising: serde_json::Value,
}

/// Reads a page; `Err` says why it is not one (a record without a numeric `risingValue`).
pub fn page(body: &[u8]) -> Result<Vec<Record<'_>>, String> {
    let list = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let raws = if list {
        serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(body)
            .map_err(|e| format!("not a page of records: {e}"))?
    } else {
        serde_json::from_slice::<Object<'_>>(body)
            .map_err(|e| format!("not a page of records: {e}"))?
            .data
    };
    raws.into_iter()
        .map(|raw| {
            let r: Rising = serde_json::from_str(raw.get())
                .map_err(|e| format!("a record without risingValue: {e}"))?;
            let rising = match &r.rising {
                serde_json::Value::Number(n) => n.as_i64(),
                serde_json::Value::String(s) => s.parse().ok(),
                _ => None,
            }
            .ok_or_else(|| format!("risingValue {} is not an integer", r.rising))?;
            Ok(Record { raw, rising })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_pages() {
        let u = url("https://acme.explore.proofpoint.com/", "alerts", 17, 500).unwrap();
        assert_eq!(
            u.as_str(),
            "https://acme.explore.proofpoint.com/v2/apis/report;realm=observeit/reports/alerts/data?since=17&limit=500"
        );
        let p =
            page(br#"{"data":[{"id":"a","risingValue":5},{"risingValue":"7","id":"b"}]}"#).unwrap();
        assert_eq!((p[0].rising, p[1].rising), (5, 7));
        assert_eq!(p[1].raw.get(), r#"{"risingValue":"7","id":"b"}"#);
        assert!(page(br#"{"data":[{"id":"a"}]}"#).is_err());
        assert!(page(br#"{"data":[{"risingValue":1.5}]}"#).is_err());
    }
}
