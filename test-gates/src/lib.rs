//! Tests that need something this machine may lack (a PostgreSQL or Redis
//! server, Chromium, PyJWT, an IPv6 loopback) are wrapped in [`needs!`]:
//! when the build script found the requirement absent, the test gets
//! `#[ignore = "why"]`, so `cargo test` prints
//! `test name ... ignored, TEST_DATABASE_URL not set` and counts it in the
//! summary's `N ignored`, never in `N passed`.
//!
//! | gate           | on when, at build time                                   |
//! |----------------|----------------------------------------------------------|
//! | `postgres`     | `TEST_DATABASE_URL` is set                               |
//! | `redis`        | `TEST_REDIS_URL` is set                                  |
//! | `redis_server` | `redis-server` is on `PATH`, or `CI=true`                |
//! | `chromium`     | `/usr/bin/chromium` and `/usr/bin/chromedriver`, or `CI=true` |
//! | `ipv6`         | `[::1]:0` can be bound                                   |
//! | `pyjwt`        | `python3 -c 'import jwt, cryptography'` succeeds         |
//! | `private_postgres` | PostgreSQL 15 binaries (and, as root, a `postgres` user) for a cluster of the test's own |
//! | `read_only_sqlite` | `chattr +i` works in the temp dir (and, as root, `setpriv` and `nobody`) |
//!
//! The decision is the build's; each test still checks at run time and
//! fails, saying what is missing, when it runs without its requirement
//! (`--ignored`, `--include-ignored`, or a variable unset after the build).
//!
//! ```text
//! test_gates::needs! { [postgres, pyjwt]
//!     #[tokio::test]
//!     async fn pyjwt_verifies_access_token_postgres() { /* … */ }
//! }
//! ```

/// Wraps items (tests); they are ignored, with the reason of the first
/// absent requirement, unless every listed gate is on (an empty list
/// changes nothing). Gates: `postgres`, `redis`, `redis_server`,
/// `chromium`, `ipv6`, `pyjwt`, `private_postgres`, `read_only_sqlite`.
#[macro_export]
macro_rules! needs {
    ([$($gate:ident),* $(,)?] $($item:tt)*) => {
        $crate::__needs! { @next [$($gate)*] [] $($item)* }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __needs {
    (@next [] [] $($item:tt)*) => { $($item)* };
    (@next [] [$why:literal] $($item:tt)*) => { #[ignore = $why] $($item)* };
    (@next [postgres $($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__postgres! { [$($rest)*] [$($why)?] $($item)* }
    };
    (@next [redis $($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__redis! { [$($rest)*] [$($why)?] $($item)* }
    };
    (@next [redis_server $($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__redis_server! { [$($rest)*] [$($why)?] $($item)* }
    };
    (@next [chromium $($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__chromium! { [$($rest)*] [$($why)?] $($item)* }
    };
    (@next [ipv6 $($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__ipv6! { [$($rest)*] [$($why)?] $($item)* }
    };
    (@next [pyjwt $($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__pyjwt! { [$($rest)*] [$($why)?] $($item)* }
    };
    (@next [private_postgres $($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__private_postgres! { [$($rest)*] [$($why)?] $($item)* }
    };
    (@next [read_only_sqlite $($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__read_only_sqlite! { [$($rest)*] [$($why)?] $($item)* }
    };
}

// One macro per gate: `__<gate>!` passes the items on unchanged when the
// gate is on, and with its reason (unless an earlier gate gave one) when
// off.

#[cfg(have_postgres)]
#[doc(hidden)]
#[macro_export]
macro_rules! __postgres {
    ([$($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$($why)?] $($item)* }
    };
}

#[cfg(not(have_postgres))]
#[doc(hidden)]
#[macro_export]
macro_rules! __postgres {
    ([$($rest:ident)*] [] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] ["TEST_DATABASE_URL not set"] $($item)* }
    };
    ([$($rest:ident)*] [$why:literal] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$why] $($item)* }
    };
}

#[cfg(have_redis)]
#[doc(hidden)]
#[macro_export]
macro_rules! __redis {
    ([$($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$($why)?] $($item)* }
    };
}

#[cfg(not(have_redis))]
#[doc(hidden)]
#[macro_export]
macro_rules! __redis {
    ([$($rest:ident)*] [] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] ["TEST_REDIS_URL not set"] $($item)* }
    };
    ([$($rest:ident)*] [$why:literal] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$why] $($item)* }
    };
}

#[cfg(have_redis_server)]
#[doc(hidden)]
#[macro_export]
macro_rules! __redis_server {
    ([$($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$($why)?] $($item)* }
    };
}

#[cfg(not(have_redis_server))]
#[doc(hidden)]
#[macro_export]
macro_rules! __redis_server {
    ([$($rest:ident)*] [] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] ["redis-server not on PATH"] $($item)* }
    };
    ([$($rest:ident)*] [$why:literal] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$why] $($item)* }
    };
}

#[cfg(have_chromium)]
#[doc(hidden)]
#[macro_export]
macro_rules! __chromium {
    ([$($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$($why)?] $($item)* }
    };
}

#[cfg(not(have_chromium))]
#[doc(hidden)]
#[macro_export]
macro_rules! __chromium {
    ([$($rest:ident)*] [] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] ["chromium/chromedriver not installed"] $($item)* }
    };
    ([$($rest:ident)*] [$why:literal] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$why] $($item)* }
    };
}

#[cfg(have_ipv6)]
#[doc(hidden)]
#[macro_export]
macro_rules! __ipv6 {
    ([$($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$($why)?] $($item)* }
    };
}

#[cfg(not(have_ipv6))]
#[doc(hidden)]
#[macro_export]
macro_rules! __ipv6 {
    ([$($rest:ident)*] [] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] ["no IPv6 loopback"] $($item)* }
    };
    ([$($rest:ident)*] [$why:literal] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$why] $($item)* }
    };
}

#[cfg(have_pyjwt)]
#[doc(hidden)]
#[macro_export]
macro_rules! __pyjwt {
    ([$($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$($why)?] $($item)* }
    };
}

#[cfg(not(have_pyjwt))]
#[doc(hidden)]
#[macro_export]
macro_rules! __pyjwt {
    ([$($rest:ident)*] [] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] ["PyJWT not installed"] $($item)* }
    };
    ([$($rest:ident)*] [$why:literal] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$why] $($item)* }
    };
}

#[cfg(have_private_postgres)]
#[doc(hidden)]
#[macro_export]
macro_rules! __private_postgres {
    ([$($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$($why)?] $($item)* }
    };
}

#[cfg(not(have_private_postgres))]
#[doc(hidden)]
#[macro_export]
macro_rules! __private_postgres {
    ([$($rest:ident)*] [] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] ["no PostgreSQL 15 binaries or postgres user for a private cluster"] $($item)* }
    };
    ([$($rest:ident)*] [$why:literal] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$why] $($item)* }
    };
}

#[cfg(have_read_only_sqlite)]
#[doc(hidden)]
#[macro_export]
macro_rules! __read_only_sqlite {
    ([$($rest:ident)*] [$($why:literal)?] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$($why)?] $($item)* }
    };
}

#[cfg(not(have_read_only_sqlite))]
#[doc(hidden)]
#[macro_export]
macro_rules! __read_only_sqlite {
    ([$($rest:ident)*] [] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] ["chattr +i, setpriv or nobody unavailable"] $($item)* }
    };
    ([$($rest:ident)*] [$why:literal] $($item:tt)*) => {
        $crate::__needs! { @next [$($rest)*] [$why] $($item)* }
    };
}

/// Whether each gate was on when the tests were built (for a test that
/// wants to say so).
pub mod built_with {
    pub const POSTGRES: bool = cfg!(have_postgres);
    pub const REDIS: bool = cfg!(have_redis);
    pub const REDIS_SERVER: bool = cfg!(have_redis_server);
    pub const CHROMIUM: bool = cfg!(have_chromium);
    pub const IPV6: bool = cfg!(have_ipv6);
    pub const PYJWT: bool = cfg!(have_pyjwt);
    pub const PRIVATE_POSTGRES: bool = cfg!(have_private_postgres);
    pub const READ_ONLY_SQLITE: bool = cfg!(have_read_only_sqlite);
}

#[cfg(test)]
mod tests {
    // A gated test that cannot pass: if the gate machinery let it through
    // when its requirement was absent, the run would go red.
    crate::needs! { [postgres]
        #[test]
        fn needs_ignores_test_when_gate_is_off() {
            let built_with_postgres = std::hint::black_box(crate::built_with::POSTGRES);
            assert!(
                built_with_postgres,
                "ran although TEST_DATABASE_URL was unset at build time"
            );
        }
    }
}
