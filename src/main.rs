//! Command line → `Config` → run. No logic of its own.

use std::process::ExitCode;

use gemini_key_manager::config::{self, Command, Config, RawOptions};

#[cfg(target_env = "musl")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let raw = match RawOptions::collect(&args, &|name| std::env::var(name).ok()) {
        Ok(r) => r,
        Err(e) => return bad_usage(&e.to_string()),
    };
    match raw.command {
        Command::Help => {
            print!("{}", config::help_text());
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("gemini-key-manager {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let cfg = match Config::from_raw(&raw) {
        Ok(c) => c,
        Err(e) => return bad_usage(&e.to_string()),
    };
    match raw.command {
        Command::Healthcheck => ExitCode::from(gemini_key_manager::commands::healthcheck(cfg.port) as u8),
        Command::Usage { json } => ExitCode::from(gemini_key_manager::commands::usage(&cfg, json) as u8),
        Command::CheckKeys => ExitCode::from(gemini_key_manager::commands::check_keys(&cfg) as u8),
        _ => serve(cfg),
    }
}

fn bad_usage(message: &str) -> ExitCode {
    for line in message.lines() {
        eprintln!("gemini-key-manager: {line}");
    }
    ExitCode::from(2)
}

fn serve(cfg: Config) -> ExitCode {
    use gemini_key_manager::logging;
    let file = cfg.log_dir.as_deref().map(|d| (d, cfg.log_max_bytes, cfg.log_keep));
    if let Err(e) = logging::init(cfg.log_level, file, true) {
        return bad_usage(&e);
    }
    // Panics go to the log (redacted, one line) rather than raw to stderr.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        log::error!("panic in thread {thread}: {info}");
    }));
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(s) => s,
        Err(e) => return bad_usage(&format!("cannot install signal handlers: {e}")),
    };
    let handle = match gemini_key_manager::start(cfg) {
        Ok(h) => h,
        Err(e) => {
            log::error!("{e}");
            logging::flush();
            return bad_usage(&e);
        }
    };
    // Signals arrive on their own thread; the main thread waits for a stop or a fatal error.
    let signal_handle = signals.handle();
    let stopper = handle.stopper();
    let app = handle.app.clone();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig == signal_hook::consts::SIGHUP {
                let _ = gemini_key_manager::background::reload_keys(&app, "SIGHUP");
                let _ = gemini_key_manager::background::reload_tokens(&app, "SIGHUP");
                continue;
            }
            log::info!("signal {sig}: shutting down");
            stopper.stop();
            break;
        }
    });
    let waited = handle.wait();
    signal_handle.close();
    if let Err(e) = waited {
        log::error!("{e}; exiting");
        logging::flush();
        return ExitCode::FAILURE;
    }
    match handle.shutdown() {
        Ok(true) => {}
        Ok(false) => log::warn!("some requests were still running after the drain timeout"),
        Err(e) => {
            log::error!("final save of the usage file failed: {e}");
            logging::flush();
            return ExitCode::FAILURE;
        }
    }
    log::info!("stopped");
    logging::flush();
    ExitCode::SUCCESS
}
