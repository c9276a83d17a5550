//! Echo server on ws-rs 0.9 (the old mio 0.6 single-threaded one). Echoes on
//! any path. max_connections raised from its default of 100 so the idle
//! scenario can run; TCP_NODELAY on, like every other server compared.
//! Usage: peer-ws-rs 127.0.0.1:PORT
fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9003".into());
    let settings = ws::Settings {
        max_connections: 40_000,
        tcp_nodelay: true,
        ..ws::Settings::default()
    };
    eprintln!("ws-rs echo on {addr}");
    ws::Builder::new()
        .with_settings(settings)
        .build(|out: ws::Sender| move |msg| out.send(msg))
        .unwrap()
        .listen(addr.as_str())
        .unwrap();
}
