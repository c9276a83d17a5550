//! A client that sends but never reads must not grow the server without
//! bound, and must not slow other clients down.
mod common;

use common::*;
use std::io::Write;
use std::time::{Duration, Instant};
use wsecho::client::Message;
use wsecho::proto::frame::OpCode;

#[test]
fn client_that_never_reads_keeps_server_memory_bounded_and_others_served() {
    let server = TestServer::start();
    let mut hog = server.upgraded();
    hog.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let frame = masked_frame(true, OpCode::Binary, &vec![0xAB; 64 * 1024]);
    let before = rss_bytes();
    // Try to push 200 MiB; the server stops reading once its queue for this
    // client is full, so our writes start timing out.
    let mut sent = 0usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent < 200 << 20 && Instant::now() < deadline {
        match hog.write(&frame) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    let after = rss_bytes();
    assert!(sent < 200 << 20, "server kept reading: {sent} bytes accepted");
    // Kernel buffers are not in RSS; the server's queue is capped at 1 MiB
    // (plus one read's worth of echo). Allow generous slack for the test
    // harness itself.
    let growth = after.saturating_sub(before);
    assert!(growth < 24 << 20, "RSS grew by {growth} bytes after {sent} bytes");
    let mut c = server.client();
    for i in 0..100 {
        c.send_text(&format!("m{i}")).unwrap();
        assert_eq!(c.recv().unwrap(), Message::Text(format!("m{i}")));
    }
}
