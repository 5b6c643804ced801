use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Log lines go out from a writer thread; the guard writes out what is
    // queued when dropped (`shared::telemetry`), below or while unwinding.
    let logs = match shared::telemetry::init_service_from_env() {
        Ok(logs) => logs,
        Err(error) => return shared::startup::report(&error),
    };
    let cli = auth_server::cli::Cli::parse();
    let result = auth_server::cli::run(cli).await;
    // Every log line before the error line.
    drop(logs);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // One line on stderr, the same style as resource-api's.
        Err(error) => shared::startup::report(&error),
    }
}
