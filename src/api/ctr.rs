//! The Cloud Threat Response incidents API (more-feeds.md): `POST <api>/api/v1/tric/incidents`
//! with a JSON filter, sent through [`super::oauth::BearerClient`] with the tenant's token.
//!
//! A request asks for the incidents whose `createdAt` lies in `time_range_filter {start, end}`
//! (`"%Y-%m-%d %H:%M:%S"`, UTC), of one state group (asking for `open_incidents` and
//! `closed_incidents` in one filter returns nothing, so each group is its own request), sorted on
//! `createdAt`, rows `startRow` to `endRow` (at most [`PAGE_ROWS`] a page). The answer's
//! incidents are kept as the bytes the API sent (invariant 5): an array at the top, or under
//! `incidents` or `data`.

use serde::Deserialize;

use super::ApiError;

/// The most rows one page may ask for.
pub const PAGE_ROWS: u32 = 200;

/// The API's path under its base URL.
pub const PATH: &str = "/api/v1/tric/incidents";

/// The state groups, one request each.
pub const STATE_GROUPS: [&str; 2] = ["open_incidents", "closed_incidents"];

/// The list URL under `base_url`.
pub fn url(base_url: &str) -> Result<reqwest::Url, ApiError> {
    reqwest::Url::parse(&format!("{}{PATH}", base_url.trim_end_matches('/')))
        .map_err(|_| ApiError::BadUrl(base_url.to_string()))
}

/// `secs` as the filter writes a time: `2026-11-20 12:00:07`, UTC.
pub fn filter_time(secs: i64) -> String {
    crate::clock::to_datetime(secs)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The body of one page's request: incidents of `group` created in `[start, end]` (unix
/// seconds), rows `start_row` to `start_row + PAGE_ROWS`, oldest first.
pub fn body(group: &str, start: i64, end: i64, start_row: u32) -> Vec<u8> {
    serde_json::json!({
        "filters": {
            "time_range_filter": {"start": filter_time(start), "end": filter_time(end)},
            "state_group_filter": [group],
        },
        "startRow": start_row,
        "endRow": start_row + PAGE_ROWS,
        "sortParams": [{"sort": "createdAt", "order": "asc"}],
    })
    .to_string()
    .into_bytes()
}

/// The incidents of a page as sent.
#[derive(Debug)]
pub struct Page<'a> {
    pub incidents: Vec<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct Object<'a> {
    #[serde(borrow, default)]
    incidents: Option<Vec<&'a serde_json::value::RawValue>>,
    #[serde(borrow, default)]
    data: Option<Vec<&'a serde_json::value::RawValue>>,
}

/// Reads a page's answer; `Err` says why it is not one.
pub fn page(body: &[u8]) -> Result<Page<'_>, String> {
    let list = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let incidents = if list {
        serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(body)
            .map_err(|e| format!("not a list of incidents: {e}"))?
    } else {
        let o: Object<'_> =
            serde_json::from_slice(body).map_err(|e| format!("not a list of incidents: {e}"))?;
        o.incidents
            .or(o.data)
            .ok_or_else(|| "an answer without `incidents`".to_string())?
    };
    if let Some(bad) = incidents.iter().find(|i| !i.get().starts_with('{')) {
        let head: String = bad.get().chars().take(40).collect();
        return Err(format!("an incident is not a JSON object: {head}"));
    }
    Ok(Page { incidents })
}

/// An incident's `createdAt` in milliseconds, when it has one that parses (RFC 3339, or the
/// filter's own layout in UTC).
pub fn created_ms(incident: &str) -> Option<i64> {
    #[derive(Deserialize)]
    struct Created<'a> {
        #[serde(rename = "createdAt", borrow)]
        created_at: Option<std::borrow::Cow<'a, str>>,
    }
    let c: Created<'_> = serde_json::from_str(incident).ok()?;
    let text = c.created_at?;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&text) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_pages_and_times() {
        let b: serde_json::Value =
            serde_json::from_slice(&body("open_incidents", 1_795_003_207, 1_795_006_807, 200))
                .unwrap();
        assert_eq!(
            b["filters"]["time_range_filter"]["start"],
            "2026-11-18 12:00:07"
        );
        assert_eq!(
            (b["startRow"].as_u64(), b["endRow"].as_u64()),
            (Some(200), Some(400))
        );
        let p = page(br#"{"incidents":[{"id":1} , {"id":2}]}"#).unwrap();
        assert_eq!(p.incidents[1].get(), r#"{"id":2}"#);
        assert_eq!(page(br#"[{"id":3}]"#).unwrap().incidents.len(), 1);
        assert!(page(br#"{"x":1}"#).is_err());
        assert!(page(br#"[1]"#).is_err());
        assert_eq!(
            created_ms(r#"{"createdAt":"2026-11-20T12:00:07Z"}"#),
            Some(1_795_176_007_000)
        );
        assert_eq!(
            url("http://h:1/").unwrap().as_str(),
            "http://h:1/api/v1/tric/incidents"
        );
    }
}
