//! `pigeon serve`: load the configuration, start the server, stop it gracefully on a signal.

use crate::cli::ServeArgs;
use crate::config::Config;
use crate::logging;
use anyhow::Context;
use tracing::{info, warn};

/// Runs the broker until SIGINT or SIGTERM. A second signal during the graceful shutdown gives
/// up waiting and exits at once.
pub async fn run(args: ServeArgs, log_flag: Option<String>) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(addrs) = &args.amqp_listen {
        config.server.amqp_listen = pigeon_server::Listen(addrs.clone());
    }
    if let Some(addrs) = &args.mqtt_listen {
        config.server.mqtt_listen = pigeon_server::Listen(addrs.clone());
    }
    if let Some(addrs) = &args.amqps_listen {
        config.server.amqps_listen = Some(pigeon_server::Listen(addrs.clone()));
    }
    if let Some(addrs) = &args.prometheus_listen {
        config.server.prometheus_listen = pigeon_server::Listen(addrs.clone());
    }
    if let Some(addrs) = &args.mqtts_listen {
        config.server.mqtts_listen = Some(pigeon_server::Listen(addrs.clone()));
    }
    if let Some(addrs) = &args.management_listen {
        config.server.management_listen = pigeon_server::Listen(addrs.clone());
    }
    if let Some(addrs) = &args.mqtt_ws_listen {
        config.server.mqtt_ws_listen = pigeon_server::Listen(addrs.clone());
    }
    if let Some(addrs) = &args.stream_listen {
        config.server.stream_listen = pigeon_server::Listen(addrs.clone());
    }
    if let Some(addrs) = &args.mqtt_wss_listen {
        config.server.mqtt_wss_listen = Some(pigeon_server::Listen(addrs.clone()));
    }
    logging::init(log_flag.as_deref(), config.log.as_deref(), "info")?;
    #[cfg(feature = "jemalloc")]
    crate::alloc::configure();
    let s = &config.server;
    if s.users.is_empty() && s.default_user.is_empty() && s.data_dir.is_none() {
        warn!("no default user and no configured users: no client will be able to log in");
    }
    // With a [cluster] table the server starts this node of the cluster and puts its
    // metadata through it (docs/clustering.md); without one it is a single node, as before.
    config.server.cluster = config.cluster()?;
    // Started again by `join_cluster` (restart.rs): the same listeners as before.
    crate::restart::keep_listeners(&mut config.server);

    let server = pigeon_server::start(config.server)
        .await
        .context("cannot start the server")?;
    let list = |kind| {
        let addrs: Vec<String> = server.addrs(kind).map(|a| a.to_string()).collect();
        if addrs.is_empty() {
            "off".to_string()
        } else {
            addrs.join(" ")
        }
    };
    use pigeon_server::ListenerKind as K;
    info!(
        "pigeon {} listening for AMQP 0-9-1 on {}, AMQPS on {}, MQTT on {}, MQTTS on {}, stream on {}, stream TLS on {}, management HTTP API on {}",
        env!("CARGO_PKG_VERSION"),
        list(K::Amqp),
        list(K::Amqps),
        list(K::Mqtt),
        list(K::Mqtts),
        list(K::Stream),
        list(K::StreamTls),
        list(K::Http),
    );

    // `ServerHandle::wait` and `shutdown` both take the handle, so the process waits for a
    // signal rather than also for the server ending on its own.
    let signal = loop {
        tokio::select! {
            signal = shutdown_signal() => break Some(signal?),
            // `pigeon ctl join_cluster` (server cluster/join.rs).
            () = server.restart_requested() => break None,
            () = reload_signal() => {
                reload_policies(&args, &server);
                reload_tls(&server);
            }
        }
    };
    let Some(signal) = signal else {
        // Stop, then start again: the new start resets the node and joins the other cluster.
        warn!("join_cluster: stopping to reset this node and join another cluster; pigeon starts again");
        let listen = crate::restart::bound(&server);
        server.shutdown().await;
        return Err(crate::restart::exec(listen));
    };
    info!("{signal} received: shutting down (send it again to exit at once)");
    tokio::select! {
        () = server.shutdown() => {
            info!("stopped");
            Ok(())
        }
        again = shutdown_signal() => {
            anyhow::bail!("{} received again: exited without waiting for connections to close", again?)
        }
    }
}

/// SIGHUP: re-reads the configuration file and applies its policies to the running broker
/// (existing queues and exchanges follow at once). Other keys need a restart.
fn reload_policies(args: &ServeArgs, server: &pigeon_server::ServerHandle) {
    let Some(path) = &args.config else {
        warn!("SIGHUP received but no --config file to reload");
        return;
    };
    match Config::load(path) {
        Ok(config) => match server.set_policies(&config.server.policies) {
            Ok(()) => info!(
                policies = config.server.policies.len(),
                "SIGHUP: policies reloaded from {}",
                path.display()
            ),
            Err(e) => warn!("SIGHUP: {e}"),
        },
        Err(e) => warn!("SIGHUP: configuration not reloaded: {e:#}"),
    }
}

/// SIGHUP: re-reads the TLS certificate, key and CA files (changes on disk are also picked up
/// without a signal). A failure keeps the files in use.
fn reload_tls(server: &pigeon_server::ServerHandle) {
    match server.reload_tls() {
        Ok(None) => {}
        Ok(Some(pigeon_server::Reloaded::Changed)) => {
            info!("SIGHUP: TLS certificate and key reloaded")
        }
        Ok(Some(pigeon_server::Reloaded::Unchanged)) => info!("SIGHUP: TLS files unchanged"),
        Err(e) => tracing::error!(
            "SIGHUP: TLS files not reloaded, the previous certificate stays in use: {e}"
        ),
    }
}

/// Waits for SIGHUP (never returns where there is none).
async fn reload_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            hup.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM and names the one that came.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            _ = int.recv() => Ok("SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("cannot watch Ctrl-C")?;
        Ok("Ctrl-C")
    }
}
