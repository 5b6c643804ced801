use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if let Err(error) = shared::telemetry::init_from_env() {
        return shared::startup::report(&error);
    }
    let cli = auth_server::cli::Cli::parse();
    match auth_server::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // One line on stderr, the same style as resource-api's.
        Err(error) => shared::startup::report(&error),
    }
}
