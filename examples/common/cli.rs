//! What the example servers share: reading a flag's value, a usage error, and serving until
//! killed after printing the address (scripts wait for that line).

use std::io::Write;

/// `value` parsed, or a usage error naming `flag`.
pub fn parse<T: std::str::FromStr>(flag: &str, value: &str, usage: &str) -> T {
    value.parse().unwrap_or_else(|_| fail(&format!("bad value for {flag}: {value}"), usage))
}

/// Print `message` and the usage, exit 2.
pub fn fail(message: &str, usage: &str) -> ! {
    eprintln!("{message}\n{usage}");
    std::process::exit(2);
}

/// Print `{what} listening on {url}` and park the main thread (the servers run on their own).
pub fn serve_forever(what: &str, url: &str) -> ! {
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{what} listening on {url}");
    let _ = stdout.flush();
    loop {
        std::thread::park();
    }
}
