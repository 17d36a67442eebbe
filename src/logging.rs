//! Log macros that skip formatting when Envoy's wasm log level would drop the line.

use proxy_wasm::types::LogLevel;
use std::cell::Cell;

thread_local! {
    static LEVEL: Cell<u32> = const { Cell::new(LogLevel::Info as u32) };
}

/// Re-reads the host's log level (once per request is enough).
pub fn refresh() {
    LEVEL.with(|l| l.set(crate::host::log_level() as u32));
}

/// Whether a line at `level` would be written.
pub fn enabled(level: LogLevel) -> bool {
    LEVEL.with(|l| level as u32 >= l.get())
}

/// Logs at a level with `format!` arguments, formatting only when enabled.
#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::logging::enabled($level) {
            $crate::host::log($level, &format!($($arg)*));
        }
    };
}

/// Debug-level log line.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log_at!(proxy_wasm::types::LogLevel::Debug, $($arg)*) };
}

/// Info-level log line.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log_at!(proxy_wasm::types::LogLevel::Info, $($arg)*) };
}

/// Warn-level log line.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log_at!(proxy_wasm::types::LogLevel::Warn, $($arg)*) };
}

/// Error-level log line.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log_at!(proxy_wasm::types::LogLevel::Error, $($arg)*) };
}
