//! Tests of `Fault::Forbidden`, of what the proxy learns about which objects exist, and of the
//! append-only bucket policy: on the test server (every byte checked) and on Garage through
//! signed curl requests.

use super::*;

fn request(method: &str, target: &str) -> Vec<u8> {
    format!("{method} {target} HTTP/1.1\r\nHost: s3.test\r\n\r\n").into_bytes()
}

fn statuses(proxy: &FaultProxy, requests: &[(&str, Vec<u8>)]) -> Vec<u16> {
    session(&proxy.url(), requests)
        .iter()
        .map(|r| status(r))
        .collect()
}

#[test]
fn forbidden_answers_access_denied_and_keeps_the_connection() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::Forbidden).path("/x").first(2)));
    let mut client = Client::connect(&proxy.url());
    let answer = text(&client.exchange("PUT", &put("/x", b"refused")));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let head = format!("{head}\r\n");
    assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    assert!(head.contains("\r\nConnection: keep-alive\r\n"), "{answer}");
    assert!(
        head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
        "{answer}"
    );
    assert!(
        body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>"),
        "{body}"
    );
    assert!(
        body.contains("<Code>AccessDenied</Code><Message>Access Denied</Message>"),
        "{body}"
    );
    assert!(body.contains("<Resource>/x</Resource>"), "{body}");
    // A HEAD gets the status without a body, and the connection still goes on.
    let answer = text(&client.exchange("HEAD", &request("HEAD", "/x")));
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    assert!(
        answer.ends_with(
            "Content-Length: 0\r\nx-amz-request-id: faultproxy-2\r\nConnection: keep-alive\r\n\r\n"
        ),
        "{answer}"
    );
    assert_eq!(status(&client.exchange("PUT", &put("/x", b"third"))), 200);
    assert_eq!(up.methods(), ["PUT"], "only the third request reached it");
    assert_eq!(up.object("/x").unwrap(), b"third");
    // A client waiting for `100 Continue` never sends the body: the connection closes.
    proxy.set_plan(Plan::seeded(1).rule(Rule::new(Fault::Forbidden)));
    let mut client = Client::connect(&proxy.url());
    let answer = text(&client.exchange(
        "PUT",
        b"PUT /x HTTP/1.1\r\nHost: s3.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    ));
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    assert_eq!(client.rest(), b"");
    let stats = proxy.stats();
    assert_eq!(stats.count(Fault::Forbidden), 3);
    assert_eq!(stats.count(Fault::Status503), 0);
    assert_eq!((stats.requests, stats.forwarded), (4, 1));
}

#[test]
fn existing_rules_refuse_writes_onto_objects_the_proxy_saw() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    proxy.set_plan(
        Plan::seeded(1).rule(
            Rule::new(Fault::Forbidden)
                .method("PUT")
                .existing()
                .except_query("uploadId"),
        ),
    );
    // Written past the proxy: unknown to it until read through it.
    session(&up.url(), &[("PUT", put("/b/read", b"direct"))]);
    session(&up.url(), &[("PUT", put("/b/head", b"direct"))]);
    session(&up.url(), &[("PUT", put("/b/blind", b"direct"))]);
    let requests = [
        ("PUT", put("/b/x", b"first")),
        ("PUT", put("/b/x", b"second")),
        ("PUT", put("/b/x?partNumber=1&uploadId=u", b"part")),
        ("GET", get("/b/read")),
        ("PUT", put("/b/read", b"over")),
        ("HEAD", request("HEAD", "/b/head")),
        ("PUT", put("/b/head", b"over")),
        ("GET", get("/b/missing")),
        ("PUT", put("/b/missing", b"new")),
        ("PUT", put("/b/blind", b"over")),
        ("DELETE", request("DELETE", "/b/x")),
        ("PUT", put("/b/x", b"again")),
        ("PUT", put("/b/a%20b", b"escaped")),
    ];
    assert_eq!(
        statuses(&proxy, &requests),
        [
            200, 403, 200, 200, 403, 200, 403, 404, 200, 200, 204, 200, 200
        ]
    );
    assert_eq!(up.object("/b/read").unwrap(), b"direct");
    assert_eq!(up.object("/b/head").unwrap(), b"direct");
    assert_eq!(
        up.object("/b/blind").unwrap(),
        b"over",
        "never seen: the documented limit"
    );
    assert_eq!(
        proxy.known_keys(),
        [
            "/b/a b",
            "/b/blind",
            "/b/head",
            "/b/missing",
            "/b/read",
            "/b/x"
        ]
    );
    // Told of objects written past it.
    proxy.add_known_keys("b", ["told", "dir/told"]);
    let requests = [
        ("PUT", put("/b/told", b"over")),
        ("PUT", put("/b/dir/told", b"over")),
        ("PUT", put("/b/a%20b", b"over")),
    ];
    assert_eq!(statuses(&proxy, &requests), [403, 403, 403]);
    assert_eq!(proxy.stats().count(Fault::Forbidden), 6);
}

#[test]
fn the_append_only_policy_refuses_deletes_overwrites_and_reads_of_backups() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.url());
    proxy.set_plan(Plan::append_only_bucket_policy());
    let r = "/bkt/some/prefix";
    let pack = format!("{r}/data/ab/abcd");
    let requests = [
        ("PUT", put(&format!("{r}/config"), b"config")),
        ("PUT", put(&pack, b"pack")),
        ("PUT", put(&format!("{r}/wal/1/1/seg"), b"wal")),
        ("GET", get(&format!("{r}/config"))),
        ("HEAD", request("HEAD", &format!("{r}/wal/1/1/seg"))),
        ("GET", get(&format!("{r}/keys/missing"))),
        ("GET", get(&pack)),
        ("HEAD", request("HEAD", &pack)),
        ("GET", get(&format!("{r}/index/i"))),
        ("GET", get(&format!("{r}/snapshots/s"))),
        ("GET", get(&format!("{r}/journal/j"))),
        ("PUT", put(&pack, b"overwritten")),
        ("PUT", put(&format!("{r}/config"), b"overwritten")),
        ("PUT", put(&format!("{pack}?partNumber=1&uploadId=u"), b"p")),
        ("POST", request("POST", &format!("{pack}?uploadId=u"))),
        ("PUT", put(&format!("{pack}?retention"), b"<Retention/>")),
        ("GET", get(&format!("{pack}?retention"))),
        ("DELETE", request("DELETE", &pack)),
        ("DELETE", request("DELETE", &format!("{r}/locks/l"))),
        ("DELETE", request("DELETE", &format!("{pack}?uploadId=u"))),
        ("POST", request("POST", "/bkt?delete")),
        (
            "GET",
            get("/bkt?list-type=2&prefix=some%2Fprefix%2Fdata%2F"),
        ),
    ];
    // The test server keeps a sub-resource as an object of its own, and has no listings.
    assert_eq!(
        statuses(&proxy, &requests),
        [
            200, 200, 200, 200, 200, 404, 403, 403, 403, 403, 403, 403, 403, 200, 403, 200, 200,
            403, 403, 403, 403, 404
        ]
    );
    assert_eq!(up.object(&pack).unwrap(), b"pack");
    assert_eq!(up.object(&format!("{r}/config")).unwrap(), b"config");
    let stats = proxy.stats();
    assert_eq!(stats.count(Fault::Forbidden), 12, "{stats:?}");
    assert_eq!(stats.requests - stats.forwarded, 12);

    // Other unreadable parts: only those.
    proxy.set_plan(Plan::append_only_bucket_policy_unreadable(&["/wal/"]));
    let requests = [
        ("GET", get(&pack)),
        ("HEAD", request("HEAD", &format!("{r}/wal/1/1/seg"))),
    ];
    assert_eq!(statuses(&proxy, &requests), [200, 403]);
}

#[test]
fn listings_and_deletes_teach_which_objects_exist() {
    let proxy = FaultProxy::start("127.0.0.1:9");
    let req = |method: &str, target: &str| Request {
        method: method.into(),
        target: target.into(),
        body: Body::None,
        close: false,
        expect_continue: false,
    };
    let listing = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
        <ListBucketResult><Name>bkt</Name><Prefix>r/</Prefix><KeyCount>3</KeyCount>\
        <Contents><Key>r/a&amp;b</Key><Size>1</Size></Contents>\
        <Contents><Key>r/c&#x20;d</Key></Contents><Contents><Key>r/e</Key></Contents>\
        <CommonPrefixes><Prefix>r/sub/</Prefix></CommonPrefixes></ListBucketResult>";
    let list = req("GET", "/bkt?list-type=2&prefix=r%2F");
    assert!(wants_body(&list, 200));
    assert!(!wants_body(&list, 404));
    assert!(!wants_body(&req("GET", "/bkt/r/e"), 200));
    proxy.shared.learn(&list, 200, Some(listing));
    assert_eq!(proxy.known_keys(), ["/bkt/r/a&b", "/bkt/r/c d", "/bkt/r/e"]);
    // Asked with `encoding-type=url`, keys come percent-encoded.
    let url = b"<ListBucketResult><Contents><Key>r/x%2By+z</Key></Contents></ListBucketResult>";
    let list = req("GET", "/bkt?list-type=2&encoding-type=url");
    proxy.shared.learn(&list, 200, Some(url));
    assert!(proxy.known_keys().contains(&"/bkt/r/x+y z".to_string()));
    // Other bucket documents teach nothing.
    let versions = b"<ListVersionsResult><Version><Key>r/v</Key></Version></ListVersionsResult>";
    proxy
        .shared
        .learn(&req("GET", "/bkt?versions"), 200, Some(versions));
    assert!(!proxy.known_keys().contains(&"/bkt/r/v".to_string()));
    // A multi-object delete forgets what it deleted, not what it failed to.
    let deleted = b"<DeleteResult><Deleted><Key>r/a&amp;b</Key></Deleted>\
        <Error><Key>r/e</Key><Code>AccessDenied</Code></Error></DeleteResult>";
    let delete = req("POST", "/bkt?delete");
    assert!(wants_body(&delete, 200));
    proxy.shared.learn(&delete, 200, Some(deleted));
    assert_eq!(
        proxy.known_keys(),
        ["/bkt/r/c d", "/bkt/r/e", "/bkt/r/x+y z"]
    );
    // A multipart upload's object exists once completed, unless the 200 carries an error.
    let complete = req("POST", "/bkt/r/m?uploadId=u");
    assert!(wants_body(&complete, 200));
    proxy.shared.learn(
        &complete,
        200,
        Some(b"<Error><Code>InternalError</Code></Error>"),
    );
    assert!(!proxy.known_keys().contains(&"/bkt/r/m".to_string()));
    let done = b"<CompleteMultipartUploadResult><Key>r/m</Key></CompleteMultipartUploadResult>";
    proxy.shared.learn(&complete, 200, Some(done));
    assert!(proxy.known_keys().contains(&"/bkt/r/m".to_string()));
    // Chunked bodies are read without their framing.
    let chunked = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n";
    assert_eq!(content(chunked, Body::Chunked), b"hello, world");
    assert_eq!(content(b"as is", Body::Length(5)), b"as is");
    assert_eq!(object_path("/bkt"), None);
    assert_eq!(object_path("/bkt/"), None);
    assert_eq!(object_path("/bkt/a%2Fb%zz"), Some("/bkt/a/b%zz".into()));
}

/// The object at `key` read straight from Garage, past the proxy.
fn direct(s3: &Garage, key: &str) -> (u16, Vec<u8>) {
    let (exit, code, body) = s3.get(&s3.endpoint, key);
    assert_eq!(exit, 0, "curl failed reading {key}");
    (code, body)
}

/// A multipart upload of `data` in one part through `base`: the statuses of its create, part
/// and complete requests, and its upload id (to abort it).
fn multipart(s3: &Garage, base: &str, key: &str, data: &[u8]) -> (u16, u16, u16, String) {
    let (_, created, body) = s3.curl(base, &format!("{key}?uploads="), &["-X", "POST"]);
    let body = text(&body);
    let id = body
        .split_once("<UploadId>")
        .and_then(|(_, rest)| rest.split_once("</UploadId>"))
        .map(|(id, _)| id.to_string())
        .unwrap_or_else(|| panic!("no upload id in {body}"));
    let file = s3.dir.path().join("part");
    std::fs::write(&file, data).unwrap();
    let headers = s3.dir.path().join("headers");
    let (_, part, _) = s3.curl(
        base,
        &format!("{key}?partNumber=1&uploadId={id}"),
        &[
            "-T",
            file.to_str().unwrap(),
            "-D",
            headers.to_str().unwrap(),
        ],
    );
    let etag = std::fs::read_to_string(&headers)
        .unwrap()
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("etag")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    let done = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part>\
         </CompleteMultipartUpload>"
    );
    let (_, completed, _) = s3.curl(
        base,
        &format!("{key}?uploadId={id}"),
        &["-X", "POST", "--data-binary", &done],
    );
    (created, part, completed, id)
}

#[test]
fn garage_behind_the_append_only_policy_keeps_every_backup() {
    let Some(s3) = Garage::from_env() else {
        return;
    };
    let proxy = FaultProxy::start(&s3.endpoint);
    proxy.set_plan(Plan::append_only_bucket_policy());
    let via = proxy.url();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let r = format!("faultproxy-policy/{}-{nanos}", std::process::id());
    let (config, pack) = (format!("{r}/config"), format!("{r}/data/ab/abcd"));

    // New objects are written; reading the config and listing pass.
    assert_eq!(s3.put(&via, &config, b"config"), (0, 200));
    assert_eq!(s3.put(&via, &pack, b"pack"), (0, 200));
    assert_eq!(s3.get(&via, &config), (0, 200, b"config".to_vec()));
    let prefix = format!("{r}/").replace('/', "%2F");
    let (exit, code, list) = s3.curl(&via, &format!("?list-type=2&prefix={prefix}"), &[]);
    assert_eq!((exit, code), (0, 200), "{}", text(&list));
    assert!(text(&list).contains(&pack), "{}", text(&list));

    // Reading the backups is refused, with S3's error.
    let (_, code, body) = s3.get(&via, &pack);
    assert_eq!(code, 403);
    assert!(
        text(&body).contains("<Code>AccessDenied</Code>"),
        "{}",
        text(&body)
    );
    assert_eq!(s3.curl(&via, &pack, &["-I"]).1, 403, "HEAD");

    // Overwrites are refused; the objects keep their content.
    assert_eq!(s3.put(&via, &pack, b"overwritten"), (0, 403));
    assert_eq!(s3.put(&via, &config, b"overwritten"), (0, 403));
    assert_eq!(direct(&s3, &pack), (200, b"pack".to_vec()));
    assert_eq!(direct(&s3, &config), (200, b"config".to_vec()));

    // Deletes are refused, one by one or many at once; the object stays.
    assert_eq!(s3.curl(&via, &pack, &["-X", "DELETE"]).1, 403);
    let many = format!("<Delete><Object><Key>{pack}</Key></Object></Delete>");
    let (_, code, _) = s3.curl(&via, "?delete=", &["-X", "POST", "--data-binary", &many]);
    assert_eq!(code, 403);
    assert_eq!(direct(&s3, &pack), (200, b"pack".to_vec()));

    // Objects written past the proxy: known once listed through it, or when told.
    let (snapshot, index) = (format!("{r}/snapshots/s1"), format!("{r}/index/i1"));
    assert_eq!(s3.put(&s3.endpoint, &snapshot, b"snapshot"), (0, 200));
    assert_eq!(s3.put(&s3.endpoint, &index, b"index"), (0, 200));
    let prefix = format!("{r}/snapshots/").replace('/', "%2F");
    let (_, code, _) = s3.curl(&via, &format!("?list-type=2&prefix={prefix}"), &[]);
    assert_eq!(code, 200);
    assert_eq!(s3.put(&via, &snapshot, b"overwritten"), (0, 403));
    proxy.add_known_keys(&s3.bucket, [&index]);
    assert_eq!(s3.put(&via, &index, b"overwritten"), (0, 403));
    assert_eq!(direct(&s3, &snapshot), (200, b"snapshot".to_vec()));
    assert_eq!(direct(&s3, &index), (200, b"index".to_vec()));

    // A multipart upload: its parts pass, completing it onto an existing object does not.
    let big = format!("{r}/data/cd/cdef");
    let (created, part, completed, _) = multipart(&s3, &via, &big, b"first upload");
    assert_eq!((created, part, completed), (200, 200, 200));
    assert_eq!(direct(&s3, &big), (200, b"first upload".to_vec()));
    let (created, part, completed, id) = multipart(&s3, &via, &big, b"second upload");
    assert_eq!((created, part, completed), (200, 200, 403));
    assert_eq!(direct(&s3, &big), (200, b"first upload".to_vec()));
    // Aborting is a DELETE: refused through the proxy, done past it.
    let abort = format!("{big}?uploadId={id}");
    assert_eq!(s3.curl(&via, &abort, &["-X", "DELETE"]).1, 403);
    assert_eq!(s3.curl(&s3.endpoint, &abort, &["-X", "DELETE"]).1, 204);

    let stats = proxy.stats();
    assert_eq!(stats.count(Fault::Forbidden), 10, "{stats:?}");
    assert_eq!(stats.injected().count(), 10);
    for k in [&config, &pack, &snapshot, &index, &big] {
        assert_eq!(s3.curl(&s3.endpoint, k, &["-X", "DELETE"]).1, 204);
    }
}
