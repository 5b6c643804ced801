//! End-to-end helpers: build, start and drive the real `auth-server` and
//! `resource-api` binaries over real sockets.
//!
//! - [`binaries`] finds the service binaries the test command built (in the
//!   target dir) and checks that they are not older than their sources.
//! - [`service`] spawns one service, reads its `listening on http://ADDR` line
//!   and polls `/healthz`; its output is kept to print when a test fails.
//! - [`stack`] runs both services on a throw-away SQLite file (or a database
//!   the caller made) and offers the `auth-server` CLI.
//! - [`browser`], [`html`], [`oauth`] drive the login and consent pages and
//!   the OAuth endpoints like a user agent and a client would.
//! - [`procfs`] reads a process's CPU time and memory (load benchmarks).
//! - `chromium` (feature `chromium`, on for the tests) drives a real
//!   headless Chromium through chromedriver, for what only a browser
//!   enforces (CSP).

pub mod binaries;
pub mod browser;
#[cfg(feature = "chromium")]
pub mod chromium;
pub mod html;
pub mod oauth;
pub mod procfs;
pub mod service;
pub mod stack;

pub use binaries::{Binaries, workspace_root};
pub use browser::Browser;
pub use oauth::{ClientAuth, OAuthResponse, Pkce};
pub use service::{Service, ServiceSpec};
pub use stack::{ClientSpec, CreatedClient, CreatedUser, Stack, StackOptions, StackTls};
