use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use resource_api::{Application, BuildOptions, Settings};

/// Portcullis resource API.
#[derive(Debug, Parser)]
#[command(name = "resource-api", version, about)]
struct Cli {
    /// A TOML file with settings (environment variables still win).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API.
    Serve {
        /// Do not run database migrations on start.
        #[arg(long)]
        no_migrate: bool,
        /// Development: CORS also allows http://localhost:3000 (a front-end
        /// dev server); logs a warning. Nothing else changes.
        #[arg(long)]
        dev: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Log lines go out from a writer thread; the guard writes out what is
    // queued when dropped (`shared::telemetry`), below or while unwinding.
    let logs = match shared::telemetry::init_service_from_env() {
        Ok(logs) => logs,
        Err(error) => return shared::startup::report(&error),
    };
    let result = run(cli).await;
    // Every log line before the error line.
    drop(logs);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // One line on stderr, not a log line; the same style as auth-server's.
        Err(error) => shared::startup::report(&error),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve { no_migrate, dev } => {
            let mut settings = settings;
            if dev {
                settings.cors_allowed_origins =
                    shared::http::with_dev_origin(settings.cors_allowed_origins);
            }
            let options = BuildOptions {
                migrate: !no_migrate,
                ..BuildOptions::default()
            };
            let app = Application::build_with(settings, options).await?;
            if dev {
                shared::http::warn_dev_mode();
            }
            app.run_until_stopped().await
        }
        Command::Migrate => resource_api::startup::migrate(&settings).await,
    }
}
