use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if let Err(error) = shared::telemetry::init_from_env() {
        eprintln!("error: {error:#}");
        return std::process::ExitCode::FAILURE;
    }
    let cli = auth_server::cli::Cli::parse();
    match auth_server::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
