use std::sync::Mutex;
use std::time::Instant;

use super::*;

fn entry() -> Entry {
    Entry {
        // 2026-11-27T19:04:58.5Z
        start: UNIX_EPOCH + Duration::new(1_795_806_298, 500_000_000),
        duration: Duration::from_micros(12_345),
        client: "[::ffff:10.0.0.7]:51000".parse().expect("addr"),
        host: HeaderValue::from_static("web.example:8080"),
        method: Method::POST,
        uri: "/a/\"b\"?q=1"
            .parse()
            .unwrap_or_else(|_| "/a?q=1".parse().expect("uri")),
        version: Version::HTTP_11,
        status: 201,
        request_bytes: 3,
        response_bytes: 42,
        entrypoint: "web".into(),
        route: None,
        endpoint: Some(Authority::from_static("10.1.2.3:8080")),
        request_id: Some(HeaderValue::from_static("abc123")),
    }
}

#[test]
fn targets() {
    assert_eq!(Target::parse("off"), Ok(Target::Off));
    assert_eq!(Target::parse("stdout"), Ok(Target::Stdout));
    assert_eq!(Target::parse("stderr"), Ok(Target::Stderr));
    assert_eq!(
        Target::parse("/var/log/berth/access.log"),
        Ok(Target::File("/var/log/berth/access.log".into()))
    );
    assert!(Target::parse(" ").is_err());
}

#[test]
fn times() {
    let t = UNIX_EPOCH + Duration::new(1_795_806_298, 500_000_000);
    assert_eq!(rfc3339(t), "2026-11-27T19:04:58.500000000Z");
    assert_eq!(clf_time(t), "27/Nov/2026:19:04:58 +0000");
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
    // A leap day.
    assert_eq!(
        clf_time(UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "29/Feb/2000:00:00:00 +0000"
    );
}

#[test]
fn text_line() {
    let mut e = entry();
    e.uri = "/a/b?q=1".parse().expect("uri");
    let mut line = String::new();
    text(&e, &mut line);
    assert_eq!(
        line,
        r#"10.0.0.7 - - [27/Nov/2026:19:04:58 +0000] "POST /a/b?q=1 HTTP/1.1" 201 42 "web.example:8080" - - "10.1.2.3:8080" "abc123" 12ms"#
    );
    e.host = HeaderValue::from_static("evil\"host");
    e.endpoint = None;
    e.request_id = None;
    line.clear();
    text(&e, &mut line);
    assert!(line.contains(r#" "evil\"host" - - - - 12ms"#), "{line}");
}

#[test]
fn json_line_uses_traefiks_field_names() {
    let e = entry();
    let mut line = String::new();
    json(&e, &mut line);
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(v["ClientAddr"], "[::ffff:10.0.0.7]:51000");
    assert_eq!(v["ClientHost"], "10.0.0.7");
    assert_eq!(v["ClientPort"], "51000");
    assert_eq!(v["RequestAddr"], "web.example:8080");
    assert_eq!(v["RequestHost"], "web.example");
    assert_eq!(v["RequestMethod"], "POST");
    assert_eq!(v["RequestPath"], e.uri.path_and_query().expect("path").as_str());
    assert_eq!(v["RequestProtocol"], "HTTP/1.1");
    assert_eq!(v["RequestContentSize"], 3);
    assert_eq!(v["DownstreamStatus"], 201);
    assert_eq!(v["DownstreamContentSize"], 42);
    assert_eq!(v["Duration"], 12_345_000);
    assert_eq!(v["ServiceAddr"], "10.1.2.3:8080");
    assert_eq!(v["entryPointName"], "web");
    assert_eq!(v["request_X-Request-Id"], "abc123");
    assert_eq!(v["StartUTC"], "2026-11-27T19:04:58.500000000Z");
    assert!(v.get("RouterName").is_none(), "no route: no RouterName: {line}");
}

#[test]
fn host_ports() {
    assert_eq!(host_without_port("a.example:80"), "a.example");
    assert_eq!(host_without_port("a.example"), "a.example");
    assert_eq!(host_without_port("[::1]:80"), "[::1]");
    assert_eq!(host_without_port("[::1]"), "[::1]");
}

/// A writer that blocks until released, then records what it got.
#[derive(Clone)]
struct Stuck {
    gate: Arc<Mutex<()>>,
    got: Arc<Mutex<Vec<u8>>>,
}

impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _wait = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        self.got
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        let _wait = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        Ok(())
    }
}

#[test]
fn a_stuck_writer_never_blocks_a_push_and_lines_are_dropped_and_counted() {
    let stuck = Stuck {
        gate: Arc::new(Mutex::new(())),
        got: Arc::new(Mutex::new(Vec::new())),
    };
    let held = stuck.gate.lock().expect("gate");
    let log = AccessLog::with_writer(Box::new(stuck.clone()), Format::Json, 4).expect("thread");
    let dropped_before = metrics::global().access_log_dropped_count();
    let started = Instant::now();
    for _ in 0..100 {
        log.push(entry());
    }
    assert!(started.elapsed() < Duration::from_secs(5), "pushes waited");
    // The queue holds four lines and the writer the few it took into its buffer before the
    // stuck write (one, or a handful if it ran between pushes): the rest were dropped.
    let dropped = metrics::global().access_log_dropped_count() - dropped_before;
    assert!(dropped >= 90, "dropped {dropped}");
    drop(held);
    drop(log);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = stuck.got.lock().expect("got").clone();
        let text = String::from_utf8(got).expect("UTF-8");
        let lines = text.lines().count();
        if lines == 100 - usize::try_from(dropped).expect("small") {
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
                assert_eq!(v["DownstreamStatus"], 201);
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the writer wrote {lines} lines: {text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
