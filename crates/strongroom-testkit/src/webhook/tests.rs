//! The receiver against a hand-written HTTP client: scripted answers, keep-alive, stalls.

use super::*;
use std::io::{BufRead, Read};

const LONG: Duration = Duration::from_secs(60);

/// Sends one POST on `conn` and returns the status line's code (None when no answer came
/// within `wait`).
fn post(conn: &mut TcpStream, body: &str, close: bool, wait: Duration) -> Option<u16> {
    write!(
        conn,
        "POST /hook?x=1 HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: {}\r\n\r\n{body}",
        body.len(),
        if close { "close" } else { "keep-alive" }
    )
    .unwrap();
    conn.set_read_timeout(Some(wait)).unwrap();
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let code = line.split(' ').nth(1)?.parse().ok()?;
    // Read the rest of the answer so the next request starts clean.
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut rest = vec![0; len];
    r.read_exact(&mut rest).unwrap();
    Some(code)
}

fn connect(hook: &Receiver) -> TcpStream {
    TcpStream::connect(hook.addr).unwrap()
}

#[test]
fn answers_from_the_script_then_the_default_and_records_every_body() {
    let hook = Receiver::answering(
        &[Answer::Status(500), Answer::Status(503)],
        Answer::Status(200),
    );
    let codes: Vec<_> = (0..4)
        .map(|i| post(&mut connect(&hook), &format!("{{\"n\":{i}}}"), true, LONG))
        .collect();
    assert_eq!(codes, [Some(500), Some(503), Some(200), Some(200)]);
    let got = hook.wait_for(4, LONG);
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].target, "/hook?x=1");
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(got[2].body_text(), "{\"n\":2}");
    assert_eq!(got[0].answer, Answer::Status(500));
    assert_eq!(got[3].answer, Answer::Status(200));
    assert!(hook.url().starts_with("http://127.0.0.1:") && hook.url().ends_with("/hook"));
}

#[test]
fn keeps_a_connection_open_between_requests() {
    let hook = Receiver::start();
    let mut conn = connect(&hook);
    assert_eq!(post(&mut conn, "first", false, LONG), Some(200));
    assert_eq!(post(&mut conn, "second", true, LONG), Some(200));
    let bodies: Vec<_> = hook.requests().iter().map(|r| r.body_text()).collect();
    assert_eq!(bodies, ["first", "second"]);
}

#[test]
fn a_stall_reads_the_request_and_never_answers() {
    let hook = Receiver::answering(&[Answer::Stall], Answer::Status(200));
    let mut stalled = connect(&hook);
    // No answer comes; the client's own short read timeout ends the wait.
    assert_eq!(
        post(&mut stalled, "{}", false, Duration::from_millis(300)),
        None
    );
    assert_eq!(hook.wait_for(1, LONG)[0].answer, Answer::Stall);
    // The next connection is answered while the first one still stalls.
    assert_eq!(post(&mut connect(&hook), "{}", true, LONG), Some(200));
    drop(hook);
    // Dropping the receiver closed the stalled connection.
    stalled.set_read_timeout(Some(LONG)).unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(stalled.read(&mut buf), Ok(0) | Err(_)));
}

#[test]
fn an_unreachable_url_refuses_connections() {
    let url = unreachable_url();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/hook")
        .to_string();
    assert!(TcpStream::connect(addr).is_err());
}
