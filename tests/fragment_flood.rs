//! Memory stays bounded under a flood of tiny fragments (own process: it
//! measures the whole process's RSS).
mod common;

use common::*;
use std::io::Write;
use wsecho::proto::frame::OpCode;

#[test]
fn flood_of_one_byte_fragments_hits_the_fragment_limit_with_1009() {
    let server = TestServer::start();
    let mut s = server.upgraded();
    let mut reader = s.try_clone().unwrap();
    let before = rss_bytes();
    // 1 MiB of 1-byte fragments: far over the default 131,072 fragments.
    let writer = std::thread::spawn(move || {
        let mut batch = masked_frame(false, OpCode::Binary, b"x");
        let one = masked_frame(false, OpCode::Continuation, b"x");
        for _ in 0..4096 {
            batch.extend_from_slice(&one);
        }
        let mut sent = 0;
        while sent < 1 << 20 {
            if s.write_all(&batch).is_err() {
                break; // the server closed on us
            }
            sent += 4097;
            batch.truncate(0);
            for _ in 0..4097 {
                batch.extend_from_slice(&one);
            }
        }
    });
    assert_eq!(expect_close(&mut reader), 1009);
    writer.join().unwrap();
    let growth = rss_bytes().saturating_sub(before);
    assert!(growth < 32 << 20, "RSS grew by {growth}");
    served(&server);
}
