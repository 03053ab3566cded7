//! The splitter's tests: realistic and adversarial bodies, every chunking, and randomized bodies
//! split whole and in random pieces, which must all give the same events or the same error.

use super::oracle;
use super::*;
use crate::event::EventKey;

/// One event as the tests compare it: kind, raw bytes, key, time.
type Seen = (EventKind, Vec<u8>, EventKey, Option<i64>);

fn collect(batch: &Batch, seen: &mut Vec<Seen>) {
    for (meta, raw) in batch.iter() {
        assert_eq!(meta.key, EventKey::of(raw));
        seen.push((meta.kind, raw.to_vec(), meta.key, meta.time_ms));
    }
}

/// Splits `body` fed in the pieces cut at `cuts` (ascending offsets), taking after every
/// piece; returns the events and the summary, or the error text.
fn split_at(body: &[u8], cuts: &[usize]) -> Result<(Vec<Seen>, SplitSummary), String> {
    let mut splitter = Splitter::new(SplitLimits::default());
    let mut out = BatchBuilder::new();
    let mut seen = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
        splitter
            .feed(&body[from..cut], &mut out)
            .map_err(|e| e.to_string())?;
        collect(&out.take(), &mut seen);
        from = cut;
    }
    let summary = splitter.finish().map_err(|e| e.to_string())?;
    collect(&out.take(), &mut seen);
    Ok((seen, summary))
}

fn split(body: &[u8]) -> Result<(Vec<Seen>, SplitSummary), String> {
    split_at(body, &[])
}

fn split_err(body: &[u8]) -> String {
    match split(body) {
        Ok(_) => panic!("{} split without error", String::from_utf8_lossy(body)),
        Err(e) => e,
    }
}

fn raws(seen: &[Seen]) -> Vec<&[u8]> {
    seen.iter().map(|s| s.1.as_slice()).collect()
}

const REALISTIC: &str = concat!(
    r#"{"queryEndTime":"2026-11-23T10:00:00Z","#,
    r#""messagesBlocked":[{"GUID":"g-1","QID":"q1","messageTime":"2026-11-23T09:10:00.000Z","#,
    r#""recipient":["a@x.example"],"subject":"Invoice {42} [urgent], \"pay\" now \\ é 😀 \u00e9","#,
    r#""spamScore":97,"phishScore":-1.5e2,"completelyRewritten":"true","quarantineFolder":null,"#,
    r#""messageParts":[{"md5":"0a","filename":"x].pdf"}],"#,
    r#""threatsInfoMap":[{"threatID":"t1","threatTime":"2026-11-23T09:11:00Z","threatUrl":"https://x/{"}]}, "#,
    r#"{"GUID":"g-1","id":"2","messageTime":"2026-11-23T09:10:00Z","recipient":["b@x.example"]}],"#,
    r#""unknownStats":{"a":[1,2,{"b":[true,false,null,"}]"]}],"c":{}},"#,
    r#""messagesDelivered":[ ],"#,
    r#""clicksBlocked":null,"#,
    r#""clicksPermitted":[{"id":"c1","url":"https://x/?a=[1]","clickTime":"2026-11-23T09:20:00Z","#,
    r#""threatTime":"2026-11-23T09:00:00Z","campaignId":"c","campaignID":"C"},"#,
    r#"{"id":"c2","clickTime":"not a time","threatTime":"2026-11-23T09:00:00.5+01:00"}]}"#,
    "\n"
);

#[test]
fn realistic_body_yields_every_event_with_kind_time_and_summary() {
    let (seen, summary) = split(REALISTIC.as_bytes()).unwrap();
    assert_eq!(
        summary,
        SplitSummary {
            query_end_time: Some("2026-11-23T10:00:00Z".into()),
            events: 4,
            unknown_arrays: vec![],
            invalid_customers: 0,
        }
    );
    let kinds: Vec<_> = seen.iter().map(|s| s.0).collect();
    assert_eq!(
        kinds,
        [
            EventKind::MessagesBlocked,
            EventKind::MessagesBlocked,
            EventKind::ClicksPermitted,
            EventKind::ClicksPermitted
        ]
    );
    assert!(seen[0].1.starts_with(br#"{"GUID":"g-1","QID""#));
    assert!(seen[0].1.ends_with(br#""threatUrl":"https://x/{"}]}"#));
    for (_, raw, _, _) in &seen {
        serde_json::from_slice::<serde_json::Value>(raw).unwrap();
    }
}

#[test]
fn every_chunking_gives_the_same_result_as_one_feed() {
    let body = REALISTIC.as_bytes();
    let whole = split(body).unwrap();
    let bytewise: Vec<usize> = (1..body.len()).collect();
    assert_eq!(split_at(body, &bytewise).unwrap(), whole);
    for cut in 0..=body.len() {
        assert_eq!(split_at(body, &[cut]).unwrap(), whole, "cut at {cut}");
    }
}

#[test]
fn strings_with_brackets_quotes_escapes_and_unicode_stay_inside_their_event() {
    let ev =
        r#"{"subject":"a}b]c{d[e,f\"g\\","x":"\\\"}","u":"\u007d\ud83d\ude00 日本 😀","e":"\\"}"#;
    let body = format!(r#"{{"messagesDelivered":[{ev},{ev}]}}"#);
    let (seen, _) = split(body.as_bytes()).unwrap();
    assert_eq!(raws(&seen), [ev.as_bytes(), ev.as_bytes()]);
}

#[test]
fn multi_recipient_events_sharing_a_guid_are_both_kept() {
    let a = r#"{"GUID":"g","recipient":["a@x"],"id":"1"}"#;
    let b = r#"{"GUID":"g","recipient":["b@x"],"id":"2"}"#;
    let body = format!(r#"{{"messagesDelivered":[{a},{b}]}}"#);
    let (seen, _) = split(body.as_bytes()).unwrap();
    assert_eq!(raws(&seen), [a.as_bytes(), b.as_bytes()]);
    assert_ne!(seen[0].2, seen[1].2);
}

#[test]
fn identical_duplicate_events_are_both_emitted() {
    let a = r#"{"GUID":"g","clickTime":"2026-11-23T09:20:00Z"}"#;
    let body = format!(r#"{{"clicksBlocked":[{a},{a}]}}"#);
    let (seen, summary) = split(body.as_bytes()).unwrap();
    assert_eq!(summary.events, 2);
    assert_eq!(seen[0], seen[1]);
}

#[test]
fn unknown_top_level_keys_with_nested_values_are_skipped() {
    let body = concat!(
        r#"{"a":{"b":[1,-0.5,2e10,3E-2,"x]}",{"c":null}],"d":{}},"n":12,"s":"[","t":true,"#,
        r#""f":false,"z":null,"e":[],"o":{},"messagesBlocked":[{"k":1}],"w":"\u0041\n"}"#
    );
    let (seen, summary) = split(body.as_bytes()).unwrap();
    assert_eq!(raws(&seen), [br#"{"k":1}"#.as_slice()]);
    assert_eq!(summary.query_end_time, None);
}

#[test]
fn null_and_empty_event_arrays_mean_no_events() {
    for body in [
        r#"{"messagesBlocked":null,"messagesDelivered":null,"clicksBlocked":null,"clicksPermitted":null}"#,
        r#"{"queryEndTime":"2026-11-23T10:00:00Z","messagesBlocked":[],"messagesDelivered":[ ],"clicksBlocked":[
        ],"clicksPermitted":[]}"#,
        "{}",
        " \r\n{ } \n",
    ] {
        let (seen, summary) = split(body.as_bytes()).unwrap();
        assert!(seen.is_empty(), "{body}");
        assert_eq!(summary.events, 0);
    }
}

#[test]
fn escaped_spellings_of_known_keys_still_name_them() {
    let body = br#"{"messages\u0042locked":[{"a":1}],"query\u0045ndTime":"t","x\"y":[{}]}"#;
    let (seen, summary) = split(body).unwrap();
    assert_eq!(seen[0].0, EventKind::MessagesBlocked);
    assert_eq!(seen.len(), 1);
    assert_eq!(summary.query_end_time.as_deref(), Some("t"));
}

#[test]
fn query_end_time_is_unescaped_and_optional() {
    let (_, s) = split(br#"{"queryEndTime":"2026-11-23T10:00:00\u005a"}"#).unwrap();
    assert_eq!(s.query_end_time.as_deref(), Some("2026-11-23T10:00:00Z"));
    let (_, s) = split(br#"{"queryEndTime":12}"#).unwrap();
    assert_eq!(s.query_end_time, None);
}

#[test]
fn pretty_printed_events_are_compacted_outside_strings_only() {
    let body = "{\n  \"messagesBlocked\": [\n    {\n      \"subject\": \"two  spaces\\nand { [ \",\n      \"recipient\": [ \"a@x\" , \"b@x\" ],\n\t\"n\" : 1\r\n    }\n  ]\n}\n";
    let (seen, _) = split(body.as_bytes()).unwrap();
    assert_eq!(
        raws(&seen),
        [br#"{"subject":"two  spaces\nand { [ ","recipient":["a@x","b@x"],"n":1}"#.as_slice()]
    );
}

#[test]
fn single_line_events_keep_their_spaces() {
    let ev = r#"{ "a" : [ 1 , 2 ] ,	"b" : "c d" }"#;
    let body = format!("{{\"clicksPermitted\": [ {ev} ,\n {ev}\n]}}");
    let (seen, _) = split(body.as_bytes()).unwrap();
    assert_eq!(raws(&seen), [ev.as_bytes(), ev.as_bytes()]);
}

#[test]
fn take_in_the_middle_of_an_event_keeps_offsets_right() {
    let a = r#"{"id":"1"}"#;
    let b = r#"{"id":"2","subject":"long enough to cut"}"#;
    let c = r#"{"id":"3"}"#;
    let body = format!(r#"{{"messagesBlocked":[{a},{b},{c}]}}"#);
    let cut = body.find("long").unwrap();
    let mut splitter = Splitter::new(SplitLimits::default());
    let mut out = BatchBuilder::new();
    splitter.feed(&body.as_bytes()[..cut], &mut out).unwrap();
    assert_eq!((out.len(), out.raw_bytes()), (1, a.len()));
    let first = out.take();
    assert_eq!(first.raw(&first.events[0]), a.as_bytes());
    assert_eq!(first.buf.len(), a.len());
    assert!(out.is_empty());
    splitter.feed(&body.as_bytes()[cut..], &mut out).unwrap();
    let second = out.take();
    let got: Vec<&[u8]> = second.iter().map(|(_, raw)| raw).collect();
    assert_eq!(got, [b.as_bytes(), c.as_bytes()]);
    assert_eq!(second.events[0].start, 0);
    assert_eq!(splitter.finish().unwrap().events, 3);
}

#[test]
fn every_truncation_of_a_valid_body_fails() {
    let body = REALISTIC.trim_end().as_bytes();
    for end in 0..body.len() {
        assert!(
            split(&body[..end]).is_err(),
            "truncated at {end} split without error"
        );
    }
}

#[test]
fn truncation_inside_an_event_names_the_event_and_offset() {
    let body = r#"{"messagesBlocked":[{"a":1},{"b":"#;
    assert_eq!(
        split_err(body.as_bytes()),
        format!(
            "response body ended inside event 1 of messagesBlocked (byte {})",
            body.len()
        )
    );
    assert_eq!(
        split_err(br#"{"messagesBlocked":[{"a":1}"#),
        "response body ended before the response object was closed (byte 27)"
    );
}

#[test]
fn bodies_that_are_not_objects_are_rejected_with_their_start() {
    assert_eq!(split_err(b""), "response body is empty");
    assert_eq!(split_err(b" \n\t "), "response body is empty");
    assert_eq!(
        split_err(b"<html><body>Service Unavailable</body></html>"),
        "response body is not a JSON object: starts with \"<html><body>Service Unavailable</body></\""
    );
    assert_eq!(
        split_err(b"  <html>"),
        "response body is not a JSON object: starts with \"<html>\""
    );
    assert_eq!(
        split_err(b"Nov 23 10:00:00 tap: \"msg\"\n"),
        "response body is not a JSON object: starts with \"Nov 23 10:00:00 tap: \\\"msg\\\"\\n\""
    );
    assert_eq!(
        split_err(br#"[{"a":1}]"#),
        "response body is not a JSON object: starts with \"[{\\\"a\\\":1}]\""
    );
}

#[test]
fn trailing_data_after_the_object_is_rejected() {
    assert_eq!(
        split_err(b"{} \n{}"),
        "trailing data after the response object at byte 4"
    );
    assert!(split(b"{}\r\n \t").is_ok());
}

#[test]
fn non_object_elements_are_rejected_with_array_and_index() {
    assert_eq!(
        split_err(br#"{"clicksPermitted":[{"a":1},{"b":2},{},"x"]}"#),
        "event 3 of clicksPermitted is not a JSON object"
    );
    assert_eq!(
        split_err(br#"{"messagesBlocked":[ 1 ]}"#),
        "event 0 of messagesBlocked is not a JSON object"
    );
    assert_eq!(
        split_err(br#"{"messagesBlocked":[[]]}"#),
        "event 0 of messagesBlocked is not a JSON object"
    );
    assert_eq!(
        split_err(br#"{"clicksBlocked":{"a":1}}"#),
        "clicksBlocked is neither an array nor null (byte 17)"
    );
    assert_eq!(
        split_err(br#"{"clicksBlocked":"none"}"#),
        "clicksBlocked is neither an array nor null (byte 17)"
    );
}

#[test]
fn invalid_event_json_names_the_event() {
    let err = split_err(
        br#"{"messagesBlocked":[{"a":1},{"a":1},{"a":1},{"a":1},{"a":1},{"a":1},{"a":1},{"a":}]}"#,
    );
    assert!(
        err.starts_with("event 7 of messagesBlocked is not valid JSON: "),
        "{err}"
    );
    for bad in [
        r#"{"a":1,}"#,
        r#"{"a" 1}"#,
        r#"{"a":[1}]"#,
        r#"{"a":"\x"}"#,
        r#"{"a":tru}"#,
    ] {
        let body = format!(r#"{{"clicksBlocked":[{bad}]}}"#);
        let err = split_err(body.as_bytes());
        assert!(
            err.starts_with("event 0 of clicksBlocked is not valid JSON: "),
            "{bad}: {err}"
        );
    }
}

#[test]
fn structurally_invalid_skipped_values_are_rejected() {
    for bad in [
        r#"{"x":[1,}"#,
        r#"{"x":01}"#,
        r#"{"x":-}"#,
        r#"{"x":1.}"#,
        r#"{"x":1e}"#,
        r#"{"x":tru}"#,
        r#"{"x":nulll}"#,
        r#"{"x":"\q"}"#,
        r#"{"x":"\u12g4"}"#,
        r#"{"x":{1:2}}"#,
        r#"{"x":{"a" 2}}"#,
        r#"{"x":[1 2]}"#,
        r#"{"x":[1}"#,
        r#"{"x":{"a":1]}"#,
        r#"{"x" 1}"#,
        r#"{"x":}"#,
        r#"{,}"#,
        "{\"x\":\"a\u{1}b\"}",
    ] {
        let err = split_err(bad.as_bytes());
        assert!(
            err.starts_with("invalid JSON in the response body at byte "),
            "{bad}: {err}"
        );
    }
    assert_eq!(
        split_err(br#"{"x":[1 2]}"#),
        "invalid JSON in the response body at byte 8: found '2', expected ',' or a closing bracket"
    );
}

#[test]
fn nesting_deeper_than_the_limit_is_rejected() {
    let limits = SplitLimits {
        max_depth: 5,
        ..SplitLimits::default()
    };
    let run = |body: &str| {
        let mut s = Splitter::new(limits);
        s.feed(body.as_bytes(), &mut BatchBuilder::new())
            .and_then(|()| s.finish())
            .map_err(|e| e.to_string())
    };
    // Top object, array, event, two more levels: 5.
    assert!(run(r#"{"messagesBlocked":[{"a":[{}]}]}"#).is_ok());
    assert_eq!(
        run(r#"{"messagesBlocked":[{"a":[{"b":[]}]}]}"#).unwrap_err(),
        "response nesting deeper than 5 (byte 31)"
    );
    assert!(run(r#"{"x":[[[[]]]]}"#).is_ok());
    assert_eq!(
        run(r#"{"x":[[[[[]]]]]}"#).unwrap_err(),
        "response nesting deeper than 5 (byte 9)"
    );
    let deep = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        split_err(deep.as_bytes()),
        "response nesting deeper than 64 (byte 68)"
    );
    let deep_event = format!(
        "{{\"messagesBlocked\":[{}{}]}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(split_err(deep_event.as_bytes())
        .starts_with("event 0 of messagesBlocked is not a JSON object"));
    let deep_event = format!(
        "{{\"messagesBlocked\":[{{\"a\":{}{}}}]}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(
        split_err(deep_event.as_bytes()),
        "response nesting deeper than 64 (byte 86)"
    );
}

#[test]
fn oversized_events_are_rejected_with_their_size() {
    let limits = SplitLimits {
        max_event_bytes: 20,
        ..SplitLimits::default()
    };
    let ok = r#"{"a":"0123456789ab"}"#;
    let big = r#"{"a":"0123456789abc"}"#;
    assert_eq!(ok.len(), 20);
    let body = format!(r#"{{"clicksBlocked":[{ok},{ok},{big}]}}"#);
    for chunk in [1, 7, body.len()] {
        let mut s = Splitter::new(limits);
        let mut out = BatchBuilder::new();
        let err = body
            .as_bytes()
            .chunks(chunk)
            .try_for_each(|c| s.feed(c, &mut out))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "event 2 of clicksBlocked is 21 bytes, over the 20-byte limit"
        );
        assert!(out.raw_bytes() <= 40);
    }
}

#[test]
fn times_are_read_per_kind_with_threat_time_fallback() {
    let body = concat!(
        r#"{"messagesDelivered":[{"messageTime":"2026-11-23T09:10:00Z","clickTime":"2001-01-01T00:00:00Z"},"#,
        r#"{"messageTime":"2026-11-23T09:10:00.250Z"},"#,
        r#"{"threatTime":"2026-11-23T09:10:00+01:00"},"#,
        r#"{"messageTime":"yesterday","threatTime":"2026-11-23T09:10:00Z"},"#,
        r#"{"MessageTime":"2026-11-23T09:10:00Z","messagetime":"2026-11-23T09:10:00Z"},"#,
        r#"{"messageTime":1234,"threatTime":["x"]},"#,
        r#"{"messageTime":"2026-11-23T09:10:00Z","messageTime":null}],"#,
        r#""clicksBlocked":[{"clickTime":"2026-11-23T09:20:00.123456Z","messageTime":"2001-01-01T00:00:00Z"},"#,
        r#"{"threatTime":"2026-11-23T09:20:00Z"},{"clickTime":"2026-11-23T09:20:00\u005a"}]}"#
    );
    let (seen, _) = split(body.as_bytes()).unwrap();
    let t = |s: &str| {
        Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis(),
        )
    };
    let times: Vec<_> = seen.iter().map(|s| s.3).collect();
    assert_eq!(
        times,
        [
            t("2026-11-23T09:10:00Z"),
            t("2026-11-23T09:10:00.250Z"),
            t("2026-11-23T08:10:00Z"),
            t("2026-11-23T09:10:00Z"),
            None,
            None,
            None,
            t("2026-11-23T09:20:00.123Z"),
            t("2026-11-23T09:20:00Z"),
            t("2026-11-23T09:20:00Z"),
        ]
    );
}

#[test]
fn a_failed_splitter_refuses_more_input_and_drops_the_partial_event() {
    let mut s = Splitter::new(SplitLimits {
        max_depth: 3,
        ..SplitLimits::default()
    });
    let mut out = BatchBuilder::new();
    s.feed(br#"{"clicksBlocked":[{"a":1},{"b":"part"#, &mut out)
        .unwrap();
    assert_eq!(out.len(), 1);
    let err = s.feed(br#"ial","c":[1]}]}"#, &mut out).unwrap_err();
    assert!(matches!(err, SplitError::TooDeep { .. }), "{err}");
    assert_eq!(out.raw_bytes(), 7);
    assert_eq!(out.take().buf.len(), 7);
    assert!(matches!(
        s.feed(b"}", &mut out),
        Err(SplitError::AlreadyFailed)
    ));
    assert!(matches!(s.finish(), Err(SplitError::AlreadyFailed)));
}

#[test]
fn events_that_are_not_utf8_are_rejected() {
    let mut body = br#"{"messagesBlocked":[{"a":"ok"},{"a":"x"#.to_vec();
    body.extend_from_slice(b"\xff\xfe\"}]}");
    assert_eq!(
        split_err(&body),
        "event 1 of messagesBlocked is not valid UTF-8 (byte 7 of the event)"
    );
}

/// Found by the differential property test: the rest of the body was not checked as UTF-8, so
/// a key, `queryEndTime` or a skipped string with bytes that are not UTF-8 (not JSON text, which
/// serde_json refuses) passed. Now they fail, at their offset, under any chunking; and valid
/// multi-byte characters cut between chunks still pass.
#[test]
fn bytes_outside_events_that_are_not_utf8_are_rejected() {
    for (bad, offset) in [
        (&b"{\"\xffmessagesBlocked\":null}"[..], 2),
        (&b"{\"queryEndTime\":\"2026\xc3\"}"[..], 22),
        (&b"{\"other\":[\"\xed\xa0\x80\"]}"[..], 12),
        (&b"{\"other\":{\"k\xe2\x82\":1}}"[..], 14),
        (&b"{\"other\":\"\xf4\x90\x80\x80\"}"[..], 11),
        (&b"{\"other\":\"\xc0\xaf\"}"[..], 10),
    ] {
        let whole = split_err(bad);
        assert!(
            whole.contains("expected UTF-8 text in a string")
                && whole.contains(&format!("at byte {offset}:")),
            "{whole}: {}",
            bad.escape_ascii()
        );
        let bytewise: Vec<usize> = (1..bad.len()).collect();
        assert_eq!(split_at(bad, &bytewise).unwrap_err(), whole);
    }
    let good = r#"{"k€":"é😀日","queryEndTime":"2026-11-23T10:00:00Z\u00e9€"}"#.as_bytes();
    let whole = split(good).unwrap();
    assert_eq!(
        whole.1.query_end_time.as_deref(),
        Some("2026-11-23T10:00:00Zé€")
    );
    for cut in 0..=good.len() {
        assert_eq!(split_at(good, &[cut]).unwrap(), whole, "cut at {cut}");
    }
}

/// Found by the differential property test: an event with a key, or a time field, that is valid
/// JSON syntax but not readable as text or as a number (a lone surrogate escape, a number beyond
/// f64) was refused as invalid, so its window failed on every retry and the tenant never moved.
/// Such an event is forwarded raw like any other; the unreadable field is simply no time.
#[test]
fn events_with_unreadable_keys_or_time_values_are_forwarded_raw() {
    let body = concat!(
        r#"{"messagesBlocked":[{"\ud800":1,"messageTime":"2026-11-23T09:10:00Z"},"#,
        r#"{"messageTime":"\udead","threatTime":"2026-11-23T09:11:00Z"},"#,
        r#"{"messageTime":1e400,"customerEid":-1e999},"#,
        r#"{"messageTime":{"\udc00":["\ud83d"]},"x":"\ud83d\u0041"}]}"#
    );
    let (seen, _) = split(body.as_bytes()).unwrap();
    let raw: Vec<&str> = seen
        .iter()
        .map(|s| std::str::from_utf8(&s.1).unwrap())
        .collect();
    let expected: Vec<&str> = serde_json::from_str::<
        std::collections::BTreeMap<String, Vec<&serde_json::value::RawValue>>,
    >(body)
    .unwrap()["messagesBlocked"]
        .iter()
        .map(|r| r.get())
        .collect();
    assert_eq!(raw, expected);
    let times: Vec<Option<i64>> = seen.iter().map(|s| s.3).collect();
    let at = |t: &str| crate::clock::parse_rfc3339_ms(t);
    assert_eq!(
        times,
        vec![
            at("2026-11-23T09:10:00Z"),
            at("2026-11-23T09:11:00Z"),
            None,
            None
        ]
    );
}

/// Found by the fuzz target (`fuzz/`, artifact `"messageed":\r\r\r-\r123…`): a multi-line event
/// was compacted before it was validated, and removing whitespace joined the tokens of invalid
/// JSON into valid JSON: `- 1` became `-1`, `[1\n2]` became `[12]`, a different value than was
/// sent. Multi-line events are now validated as sent; valid ones still compact as before.
#[test]
fn multi_line_events_are_validated_before_whitespace_is_removed() {
    for event in [
        "{\"messageed\":\r\r\r-\r123333333333333333}",
        "{\"a\":[1\n2]}",
        "{\"a\":tr\nue}",
        "{\"a\":1.\n5}",
        "{\"a\":1e\n5}",
        "{\"a\":n\nu\nl\nl}",
    ] {
        let body = format!("{{\"messagesBlocked\":[{event}]}}");
        let e = split_err(body.as_bytes());
        assert!(
            e.starts_with("event 0 of messagesBlocked is not valid JSON"),
            "{event:?}: {e}"
        );
        assert!(
            oracle::tap_response(body.as_bytes()).is_err(),
            "serde_json refuses {event:?} too"
        );
        let bytewise: Vec<usize> = (1..body.len()).collect();
        assert_eq!(split_at(body.as_bytes(), &bytewise).unwrap_err(), e);
    }
    let (seen, _) =
        split(b"{\"messagesBlocked\":[{\"a\" :\n [ -1 ,\r\n 2 ], \"b\":\"x \\n y\"\n}]}").unwrap();
    assert_eq!(raws(&seen), vec![&b"{\"a\":[-1,2],\"b\":\"x \\n y\"}"[..]]);
}

/// Keys and time fields are read leniently (above) but still as JSON: a raw control character
/// in either is invalid and fails the event.
#[test]
fn raw_control_characters_in_event_keys_and_times_are_still_invalid() {
    for body in [
        &b"{\"clicksBlocked\":[{\"click\x00Time\":1}]}"[..],
        &b"{\"clicksBlocked\":[{\"clickTime\":\"2026\x01\"}]}"[..],
        &b"{\"clicksBlocked\":[{\"a\nb\":1,\n\"c\":2}]}"[..],
    ] {
        let e = split_err(body);
        assert!(
            e.starts_with("event 0 of clicksBlocked is not valid JSON: control character"),
            "{e}"
        );
    }
}

/// A tiny deterministic PRNG (xorshift64*), so the randomized tests need no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random JSON text written twice: `spaced` with random whitespace between tokens, and
/// `compact` without; `newline` notes whether `spaced` got a line break between tokens.
struct Gen {
    rng: Rng,
    spaced: String,
    compact: String,
    newline: bool,
    pretty: bool,
}

impl Gen {
    fn ws(&mut self) {
        let choices: &[&str] = if self.pretty {
            &["", " ", "\n", "\t", "\r\n  "]
        } else {
            &["", "", " ", "\t"]
        };
        let w = choices[self.rng.below(choices.len())];
        self.newline |= w.contains('\n');
        self.spaced.push_str(w);
    }

    fn tok(&mut self, t: &str) {
        self.ws();
        self.spaced.push_str(t);
        self.compact.push_str(t);
    }

    fn string(&mut self) {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            " ",
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\\\"",
            "\\\\",
            "\\n",
            "\\/",
            "é",
            "😀",
            "日",
            "\\u00e9",
            "\\ud83d\\ude00",
            "\\u005c",
            "x\\\\\\\"y",
            "\n\\n",
        ];
        let mut s = String::from("\"");
        for _ in 0..self.rng.below(8) {
            let p = PIECES[self.rng.below(PIECES.len())];
            // A raw newline is not valid JSON inside a string: escape it.
            s.push_str(if p == "\n\\n" { "\\n\\n" } else { p });
        }
        s.push('"');
        self.tok(&s);
    }

    fn value(&mut self, depth: usize) {
        let pick = if depth >= 5 {
            self.rng.below(5)
        } else {
            self.rng.below(8)
        };
        match pick {
            0 => self.tok("null"),
            1 => {
                let b = ["true", "false"][self.rng.below(2)];
                self.tok(b)
            }
            2 => {
                let n = ["0", "-1", "12.5", "3e7", "-0.25E-3", "42"][self.rng.below(6)];
                self.tok(n)
            }
            3 | 4 => self.string(),
            5 => {
                self.tok("[");
                for i in 0..self.rng.below(4) {
                    if i > 0 {
                        self.tok(",");
                    }
                    self.value(depth + 1);
                }
                self.tok("]");
            }
            _ => self.object(depth),
        }
    }

    fn object(&mut self, depth: usize) {
        self.tok("{");
        for i in 0..self.rng.below(5) {
            if i > 0 {
                self.tok(",");
            }
            self.string();
            self.tok(":");
            self.value(depth + 1);
        }
        self.tok("}");
    }

    /// Starts recording one event; returns the spaced length before it.
    fn mark(&mut self) -> (usize, usize) {
        self.newline = false;
        (self.spaced.len(), self.compact.len())
    }
}

/// A random response body and the raw events it must yield.
fn random_body(seed: u64, pretty: bool) -> (String, Vec<(EventKind, String)>) {
    let mut g = Gen {
        rng: Rng(seed | 1),
        spaced: String::new(),
        compact: String::new(),
        newline: false,
        pretty,
    };
    let mut expected = Vec::new();
    g.tok("{");
    let keys = g.rng.below(7);
    for i in 0..keys {
        if i > 0 {
            g.tok(",");
        }
        match g.rng.below(4) {
            0 => {
                g.tok("\"other\"");
                g.tok(":");
                g.value(1);
            }
            1 => {
                g.tok("\"queryEndTime\"");
                g.tok(":");
                g.tok("\"2026-11-23T10:00:00Z\"");
            }
            _ => {
                let kind = EventKind::SIEM[g.rng.below(4)];
                g.tok(&format!("\"{kind}\""));
                g.tok(":");
                if g.rng.below(6) == 0 {
                    g.tok("null");
                    continue;
                }
                g.tok("[");
                for j in 0..g.rng.below(4) {
                    if j > 0 {
                        g.tok(",");
                    }
                    g.ws();
                    let (s0, c0) = g.mark();
                    g.compact.push('{');
                    g.spaced.push('{');
                    for f in 0..g.rng.below(5) {
                        if f > 0 {
                            g.tok(",");
                        }
                        g.string();
                        g.tok(":");
                        g.value(3);
                    }
                    g.tok("}");
                    let raw = if g.newline {
                        g.compact[c0..].to_string()
                    } else {
                        g.spaced[s0..].to_string()
                    };
                    expected.push((kind, raw));
                }
                g.tok("]");
            }
        }
    }
    g.tok("}");
    g.ws();
    (g.spaced, expected)
}

#[test]
fn random_bodies_split_the_same_under_random_chunkings() {
    for seed in 0..400u64 {
        let (body, expected) = random_body(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), seed % 2 == 0);
        let whole = split(body.as_bytes()).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{body}"));
        let got: Vec<(EventKind, String)> = whole
            .0
            .iter()
            .map(|s| (s.0, String::from_utf8(s.1.clone()).unwrap()))
            .collect();
        assert_eq!(got, expected, "seed {seed}\n{body}");
        let mut rng = Rng(seed + 7);
        for _ in 0..4 {
            let mut cuts: Vec<usize> = (0..rng.below(12))
                .map(|_| rng.below(body.len() + 1))
                .collect();
            cuts.sort_unstable();
            assert_eq!(
                split_at(body.as_bytes(), &cuts).unwrap(),
                whole,
                "seed {seed} cuts {cuts:?}"
            );
        }
    }
}

#[test]
fn mangled_bodies_never_panic_and_fail_the_same_under_any_chunking() {
    for seed in 0..300u64 {
        let (body, _) = random_body(seed ^ 0x5555, seed % 3 == 0);
        let mut bytes = body.into_bytes();
        let mut rng = Rng(seed + 99);
        for _ in 0..=rng.below(3) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[at] = b"{}[],:\"\\ x0n"[rng.below(12)],
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        let whole = split(&bytes);
        let bytewise: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(split_at(&bytes, &bytewise), whole, "seed {seed}");
    }
}

#[test]
fn unknown_top_level_arrays_are_named_and_counted() {
    let body = br#"{"queryEndTime":"t","MessagesDelivered":[{"a":[1,2]},{"b":{}}],"messagesBlocked":[],"messages\u0051uarantined":[1,[2,3],"x"],"other":{"inner":[1]},"empty":[]}"#;
    let (seen, s) = split(body).unwrap();
    assert!(seen.is_empty());
    assert_eq!(
        s.unknown_arrays,
        vec![
            ("MessagesDelivered".to_string(), 2),
            ("messagesQuarantined".to_string(), 3),
            ("empty".to_string(), 0),
        ]
    );
}

/// The differential property test: random TAP SIEM bodies (random events of the four arrays,
/// strings with escapes, lone surrogates and non-ASCII text, nested values, numbers of every
/// shape, escaped spellings of the keys, duplicate arrays, unknown keys and arrays, whitespace of
/// every kind) fed at random cut points must give exactly the events serde_json finds in the same
/// bytes ([`super::oracle`]); the same bodies damaged at random must fail wherever serde_json
/// fails, under any cutting, and never panic. proptest shrinks a failure to a small body and
/// prints it.
mod differential {
    use proptest::prelude::*;
    use proptest::sample::{select, Index};

    use super::super::oracle;
    use super::*;

    /// A JSON value, strings already escaped (without their quotes).
    #[derive(Clone, Debug)]
    enum J {
        Null,
        Bool(bool),
        Num(String),
        Str(String),
        Arr(Vec<J>),
        Obj(Vec<(String, J)>),
    }

    /// One member of the response object.
    #[derive(Clone, Debug)]
    enum Entry {
        /// An event array (its key perhaps spelt with an escape), or `null`.
        Events {
            key: String,
            events: Option<Vec<J>>,
        },
        QueryEndTime(String),
        Other {
            key: String,
            value: J,
        },
    }

    /// Bits of string content, as they appear between the quotes.
    const PIECES: &[&str] = &[
        "\\\"",
        "\\\\",
        "\\/",
        "\\b",
        "\\f",
        "\\n",
        "\\r",
        "\\t",
        "\\u0000",
        "\\u00e9",
        "\\u005c",
        "\\u0022",
        "\\ud83d\\ude00",
        "\\ud800",
        "\\uDFFF",
        "\\ud83dx",
        "é",
        "😀",
        "日",
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        " ",
        "\u{7f}",
        "\u{2028}",
    ];

    const NUMBERS: &[&str] = &[
        "0",
        "-0",
        "1",
        "-1",
        "12.5",
        "3e7",
        "-0.25E-3",
        "1E+2",
        "1e400",
        "-1e400",
        "0.000001",
        "123456789012345678901234567890",
        "9007199254740993",
    ];

    const TIMES: &[&str] = &[
        "2026-11-23T09:10:00Z",
        "2026-11-23T09:10:00.123Z",
        "2026-11-23T10:10:00+01:00",
        "not a time",
        "",
        "\\ud800",
    ];

    /// Whitespace between tokens; `\n` makes an event multi-line (compacted).
    const SPACES: &[&str] = &["", "", " ", "\t", "\n", "\r\n  ", "   "];

    fn escape_char(c: char) -> String {
        match c {
            '"' => "\\\"".into(),
            '\\' => "\\\\".into(),
            c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32),
            c => c.to_string(),
        }
    }

    fn string() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            3 => any::<char>().prop_map(escape_char),
            2 => select(PIECES).prop_map(str::to_string),
            2 => "[a-zA-Z0-9 ]{1,6}",
        ];
        prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            select(NUMBERS).prop_map(str::to_string),
            any::<i64>().prop_map(|n| n.to_string()),
            "-?(0|[1-9][0-9]{0,5})(\\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?",
        ]
    }

    fn value() -> impl Strategy<Value = J> {
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            number().prop_map(J::Num),
            string().prop_map(J::Str),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(J::Arr),
                prop::collection::vec((string(), inner), 0..5).prop_map(J::Obj),
            ]
        })
    }

    fn event() -> impl Strategy<Value = J> {
        let key = prop_oneof![
            2 => select(&[
                "messageTime", "clickTime", "threatTime", "customerEid", "GUID", "id",
                "message\\u0054ime", "\\ud800",
            ][..])
            .prop_map(str::to_string),
            1 => string(),
        ];
        let field_value = prop_oneof![
            2 => value(),
            1 => select(TIMES).prop_map(|t| J::Str(t.to_string())),
        ];
        prop::collection::vec((key, field_value), 0..6).prop_map(J::Obj)
    }

    /// A known array's name, with one character perhaps spelt as `\uXXXX`.
    fn array_key() -> impl Strategy<Value = String> {
        (select(&oracle::ARRAYS[..]), any::<Option<Index>>()).prop_map(|(name, escape)| {
            let Some(at) = escape else {
                return name.to_string();
            };
            let at = at.index(name.len());
            name.char_indices()
                .map(|(i, c)| {
                    if i == at {
                        format!("\\u{:04X}", c as u32)
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        })
    }

    fn entry() -> impl Strategy<Value = Entry> {
        let other_key = prop_oneof![
            select(
                &[
                    "other",
                    "MessagesDelivered",
                    "messagesQuarantined",
                    "queryEndTime"
                ][..]
            )
            .prop_map(str::to_string),
            string(),
        ];
        prop_oneof![
            4 => (array_key(), prop::option::weighted(0.85, prop::collection::vec(event(), 0..5)))
                .prop_map(|(key, events)| Entry::Events { key, events }),
            1 => select(TIMES).prop_map(|t| Entry::QueryEndTime(t.to_string())),
            2 => (other_key, value()).prop_map(|(key, value)| Entry::Other { key, value }),
        ]
    }

    /// A response body: its entries, written with whitespace drawn in turn from `spaces`.
    fn body() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(entry(), 0..6),
            prop::collection::vec(select(SPACES), 1..24),
        )
            .prop_map(|(entries, spaces)| {
                let mut w = Writer {
                    out: String::new(),
                    spaces,
                    next: 0,
                };
                w.tok("{");
                for (i, e) in entries.iter().enumerate() {
                    if i > 0 {
                        w.tok(",");
                    }
                    match e {
                        Entry::Events { key, events } => {
                            w.str(key);
                            w.tok(":");
                            match events {
                                None => w.tok("null"),
                                Some(events) => w.array(events),
                            }
                        }
                        Entry::QueryEndTime(t) => {
                            w.str("queryEndTime");
                            w.tok(":");
                            w.str(t);
                        }
                        Entry::Other { key, value } => {
                            w.str(key);
                            w.tok(":");
                            w.value(value);
                        }
                    }
                }
                w.tok("}");
                w.space();
                w.out
            })
    }

    struct Writer {
        out: String,
        spaces: Vec<&'static str>,
        next: usize,
    }

    impl Writer {
        fn space(&mut self) {
            self.out
                .push_str(self.spaces[self.next % self.spaces.len()]);
            self.next += 1;
        }
        fn tok(&mut self, t: &str) {
            self.space();
            self.out.push_str(t);
        }
        fn str(&mut self, s: &str) {
            self.tok(&format!("\"{s}\""));
        }
        fn array(&mut self, items: &[J]) {
            self.tok("[");
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    self.tok(",");
                }
                self.value(v);
            }
            self.tok("]");
        }
        fn value(&mut self, v: &J) {
            match v {
                J::Null => self.tok("null"),
                J::Bool(b) => self.tok(if *b { "true" } else { "false" }),
                J::Num(n) => self.tok(n),
                J::Str(s) => self.str(s),
                J::Arr(items) => self.array(items),
                J::Obj(members) => {
                    self.tok("{");
                    for (i, (k, v)) in members.iter().enumerate() {
                        if i > 0 {
                            self.tok(",");
                        }
                        self.str(k);
                        self.tok(":");
                        self.value(v);
                    }
                    self.tok("}");
                }
            }
        }
    }

    fn cut_points(body: &[u8], at: &[Index]) -> Vec<usize> {
        let mut cuts: Vec<usize> = at.iter().map(|i| i.index(body.len() + 1)).collect();
        cuts.sort_unstable();
        cuts
    }

    fn events(seen: &[Seen]) -> Vec<(&'static str, String)> {
        seen.iter()
            .map(|s| (s.0.as_str(), String::from_utf8(s.1.clone()).unwrap()))
            .collect()
    }

    /// A byte that damages JSON in an interesting way (or any byte).
    fn damage() -> impl Strategy<Value = u8> {
        prop_oneof![
            select(&b"{}[],:\"\\ \n0-eEnu\xff\xc3\xe2\x80\xed\xf4\x00"[..]),
            any::<u8>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn random_bodies_at_random_cuts_give_exactly_serde_jsons_events(
            body in body(),
            at in prop::collection::vec(any::<Index>(), 0..16),
        ) {
            let bytes = body.as_bytes();
            let expected = oracle::tap_response(bytes)
                .map_err(|e| TestCaseError::fail(format!("the generator wrote invalid JSON ({e})")))?;
            prop_assert!(oracle::nesting(bytes) <= SplitLimits::default().max_depth);
            let cuts = cut_points(bytes, &at);
            let (cut, _) = split_at(bytes, &cuts).map_err(TestCaseError::fail)?;
            prop_assert_eq!(events(&cut), expected.clone(), "cut at {:?}", cuts);
            let (whole, _) = split(bytes).map_err(TestCaseError::fail)?;
            prop_assert_eq!(events(&whole), expected);
        }

        #[test]
        fn damaged_bodies_fail_where_serde_json_fails_and_never_panic(
            body in body(),
            edits in prop::collection::vec((any::<Index>(), 0..4u8, damage()), 1..4),
            at in prop::collection::vec(any::<Index>(), 0..16),
        ) {
            let mut bytes = body.into_bytes();
            for (i, op, b) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = i.index(bytes.len());
                match op {
                    0 => bytes[i] = b,
                    1 => {
                        bytes.remove(i);
                    }
                    2 => bytes.insert(i, b),
                    _ => bytes.truncate(i),
                }
            }
            let cuts = cut_points(&bytes, &at);
            let cut = split_at(&bytes, &cuts);
            let whole = split(&bytes);
            match oracle::tap_response(&bytes) {
                Ok(expected) => {
                    let (cut, _) = cut.map_err(TestCaseError::fail)?;
                    prop_assert_eq!(events(&cut), expected.clone(), "cut at {:?}", cuts);
                    let (whole, _) = whole.map_err(TestCaseError::fail)?;
                    prop_assert_eq!(events(&whole), expected);
                }
                Err(why) => {
                    prop_assert!(
                        cut.is_err() && whole.is_err(),
                        "serde_json refuses ({}), the splitter accepts: {}",
                        why,
                        String::from_utf8_lossy(&bytes)
                    );
                }
            }
        }
    }
}

/// Issue 20, item 8: only a `customerEid` that is a string holding a customer id (1 to 64
/// printable ASCII characters) is the event's customer; a number (`4711`, `4711.0`), a string
/// with a NUL or a space, or one over 64 bytes is no customer, and the summary counts it. The
/// events themselves are forwarded byte for byte.
#[test]
fn only_a_string_customer_id_is_a_customer_and_the_rest_are_counted() {
    let long = "9".repeat(65);
    let body = format!(
        concat!(
            r#"{{"messagesBlocked":["#,
            r#"{{"GUID":"1","customerEid":"4711"}},"#,
            r#"{{"GUID":"2","customerEid":4711}},"#,
            r#"{{"GUID":"3","customerEid":4711.0}},"#,
            r#"{{"GUID":"4","customerEid":"47\u000011"}},"#,
            r#"{{"GUID":"5","customerEid":"{long}"}},"#,
            r#"{{"GUID":"6","customerEid":"47 11"}},"#,
            r#"{{"GUID":"7","customerEid":"\ud800"}},"#,
            r#"{{"GUID":"8","customerEid":""}},"#,
            r#"{{"GUID":"9","customerEid":null}},"#,
            r#"{{"GUID":"10"}},"#,
            r#"{{"GUID":"11","customerEid":"\u0034\u0037\u0031\u0032"}}"#,
            r#"]}}"#
        ),
        long = long
    );
    let mut splitter = Splitter::new(SplitLimits::default());
    let mut out = BatchBuilder::new();
    splitter.feed(body.as_bytes(), &mut out).unwrap();
    let summary = splitter.finish().unwrap();
    let batch = out.take();
    let customers: Vec<Option<&str>> = batch.events.iter().map(|e| batch.customer(e)).collect();
    assert_eq!(
        customers,
        vec![
            Some("4711"),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            Some("4712")
        ]
    );
    assert_eq!(summary.invalid_customers, 6);
    let expected: Vec<&str> = serde_json::from_str::<
        std::collections::BTreeMap<String, Vec<&serde_json::value::RawValue>>,
    >(&body)
    .unwrap()["messagesBlocked"]
        .iter()
        .map(|r| r.get())
        .collect();
    let raw: Vec<&str> = batch
        .iter()
        .map(|(_, r)| std::str::from_utf8(r).unwrap())
        .collect();
    assert_eq!(raw, expected);
}

/// The scan notes where an event's time fields and `customerEid` lie and reads only those; the
/// reference is serde_json reading the whole event (`EventTimes::read`, which multi-line events
/// still use). Random events of those keys, spelled plainly and escaped, near-misses, duplicates,
/// and values of every kind must read the same both ways, under any chunking.
#[test]
fn time_fields_read_by_the_scan_match_serde_json_reading_the_event() {
    const KEYS: &[&str] = &[
        "\"messageTime\"",
        "\"clickTime\"",
        "\"threatTime\"",
        "\"customerEid\"",
        "\"message\\u0054ime\"",
        "\"\\u0063lickTime\"",
        "\"\\ud800\"",
        "\"clickTim\"",
        "\"threatTimes\"",
        "\"recipient\"",
        "\"customereid\"",
    ];
    const VALUES: &[&str] = &[
        "\"2026-11-23T09:10:00Z\"",
        "\"2026-11-23T09:10:00.250+01:00\"",
        "\"2026-11-23T09:10:00\\u005a\"",
        "\"not a time\"",
        "\"\"",
        "\"\\udead\"",
        "null",
        "1234",
        "-1e400",
        "true",
        "[\"2026-11-23T09:10:00Z\"]",
        "{\"messageTime\":\"2026-11-23T09:10:00Z\"}",
        "\"4711\"",
        "\"C-42\"",
        "\"a b\"",
        "\"\\u0034711\"",
    ];
    const SPACE: &[&str] = &["", "", " ", "\t", "  "];
    let mut rng = Rng(0x7157_u64);
    for round in 0..300 {
        let mut events = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let mut e = String::from("{");
            for f in 0..rng.below(7) {
                if f > 0 {
                    e.push_str(SPACE[rng.below(SPACE.len())]);
                    e.push(',');
                }
                e.push_str(SPACE[rng.below(SPACE.len())]);
                e.push_str(KEYS[rng.below(KEYS.len())]);
                e.push_str(SPACE[rng.below(SPACE.len())]);
                e.push(':');
                e.push_str(SPACE[rng.below(SPACE.len())]);
                e.push_str(VALUES[rng.below(VALUES.len())]);
            }
            e.push_str(SPACE[rng.below(SPACE.len())]);
            e.push('}');
            events.push(e);
        }
        let kind = EventKind::SIEM[round % 4];
        let body = format!("{{\"{kind}\":[{}]}}", events.join(","));
        let mut expected_invalid = 0;
        let expected: Vec<(Option<i64>, Option<String>)> = events
            .iter()
            .map(|e| {
                let t = super::times::EventTimes::read(e).expect(e);
                let customer = match &t.customer {
                    super::times::Customer::Id(c) => Some(c.to_string()),
                    super::times::Customer::Invalid => {
                        expected_invalid += 1;
                        None
                    }
                    super::times::Customer::None => None,
                };
                (t.time_ms(kind), customer)
            })
            .collect();
        let mut cuts: Vec<usize> = (0..rng.below(6))
            .map(|_| rng.below(body.len() + 1))
            .collect();
        cuts.sort_unstable();
        let mut splitter = Splitter::new(SplitLimits::default());
        let mut out = BatchBuilder::new();
        let mut got = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
            splitter
                .feed(&body.as_bytes()[from..cut], &mut out)
                .unwrap_or_else(|e| panic!("{body}: {e}"));
            let batch = out.take();
            for (meta, _) in batch.iter() {
                got.push((meta.time_ms, meta.customer.as_deref().map(str::to_string)));
            }
            from = cut;
        }
        let summary = splitter.finish().unwrap();
        assert_eq!(got, expected, "{body} cut at {cuts:?}");
        assert_eq!(summary.invalid_customers, expected_invalid, "{body}");
    }
}
