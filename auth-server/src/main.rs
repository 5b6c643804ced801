use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::telemetry::init_tracing();
    let cli = auth_server::cli::Cli::parse();
    match auth_server::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
