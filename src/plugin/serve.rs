//! Process entry: check the handshake environment, bind, announce, serve until Shutdown (or Ctrl-C in debug).
//!
//! The gRPC server hosts, besides the provider service, the go-plugin services the host expects: the
//! controller (Shutdown → exit), the health service with `plugin` = SERVING, and stubs for stdio and the broker
//! (their default UNIMPLEMENTED answers are what go-plugin treats as "not available").

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use super::handshake::{self, HandshakeError, PluginEnv};
use super::proto::goplugin;
use super::proto::tfplugin6::provider_server::ProviderServer;
use super::server::ProviderService;
use super::service::ErasedProvider;

/// Message size limit in both directions (go-plugin's client allows 2 GiB; terraform-plugin-go uses 256 MiB).
pub const MAX_MESSAGE_SIZE: usize = 256 << 20;

struct Controller {
    shutdown: CancellationToken,
    debug: bool,
}

#[tonic::async_trait]
impl goplugin::grpc_controller_server::GrpcController for Controller {
    async fn shutdown(
        &self,
        _r: Request<goplugin::Empty>,
    ) -> Result<Response<goplugin::Empty>, Status> {
        tracing::debug!("host requested shutdown");
        if !self.debug {
            // Graceful stop lets this answer go out; the host closes its connection right after, the server
            // returns and the process exits. The backstop covers a host that keeps the connection open.
            self.shutdown.cancel();
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                handshake::exit_now(0);
            });
        }
        Ok(Response::new(goplugin::Empty {}))
    }
}

struct Stdio;
#[tonic::async_trait]
impl goplugin::grpc_stdio_server::GrpcStdio for Stdio {}

struct Broker;
#[tonic::async_trait]
impl goplugin::grpc_broker_server::GrpcBroker for Broker {}

/// What this process serves: the provider's name and version, and how to build it.
#[derive(Clone, Copy)]
pub struct Plugin {
    /// The provider's name as users write it (`provider "homelab"`); the binary is `terraform-provider-<name>`.
    pub name: &'static str,
    /// The provider's version, for `--version`.
    pub version: &'static str,
    /// Builds the provider; called once, after the handshake line is out (see [`serve`]).
    pub make: fn() -> Arc<dyn ErasedProvider>,
}

impl Plugin {
    fn binary(&self) -> String {
        format!("terraform-provider-{}", self.name)
    }
}

/// Runs the provider process. `args` are the command-line arguments without the program name; `plugin` says
/// what this process serves (`main.rs` hands in the homelab provider).
pub fn main_with_args(args: &[String], plugin: Plugin) -> ExitCode {
    let bin = plugin.binary();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!(
            "{bin} {}\n\nTerraform starts this plugin itself. Options:\n  --debug   serve for \
             a debugger: prints a TF_REATTACH_PROVIDERS value to use in another shell, serves until Ctrl-C",
            plugin.version
        );
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--version") {
        eprintln!("{bin} {}", plugin.version);
        return ExitCode::SUCCESS;
    }
    let debug = args.iter().any(|a| a == "--debug");
    // A panic anywhere ends the process, like a Go plugin: Terraform then reports that the provider crashed and
    // prints the lines after "panic: " from our stderr as the provider's stack trace. Without this, a panicking
    // request task would only drop its connection.
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "panic: {info}\n\n{}",
            std::backtrace::Backtrace::force_capture()
        );
        handshake::exit_now(2);
    }));
    let env_get = |k: &str| std::env::var(k).ok();
    let mut level = super::log::level_from_env(env_get, plugin.name);
    if debug && level == tracing_subscriber::filter::LevelFilter::OFF {
        level = tracing_subscriber::filter::LevelFilter::INFO;
    }
    super::log::init(level, &format!("provider.{bin}"));

    let env = if debug {
        PluginEnv {
            client_cert: None,
            socket_dir: env_get("PLUGIN_UNIX_SOCKET_DIR")
                .filter(|s| !s.is_empty())
                .map(Into::into),
        }
    } else {
        match handshake::check_env(env_get, &handshake::provider_address(plugin.name)) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{bin}: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(serve(env, debug, plugin)) {
        Ok(()) => handshake::exit_now(0),
        Err(e) => {
            eprintln!("{bin}: {e}");
            handshake::exit_now(1)
        }
    }
}

async fn serve(env: PluginEnv, debug: bool, plugin: Plugin) -> Result<(), HandshakeError> {
    let (listener, socket) = handshake::bind_socket(env.socket_dir.as_deref(), plugin.name)?;
    let (tls, cert_der) = match (&env.client_cert, debug) {
        (Some(client), false) => {
            let cert = handshake::generate_server_cert()?;
            let cfg = handshake::tls_config(&cert, client.clone())?;
            (Some(cfg), Some(cert.cert_der))
        }
        _ => (None, None),
    };

    // Announce first, build the services second: Terraform needs a millisecond or two to parse the line and dial,
    // and the schema and router are built meanwhile (a connection made before `serve` starts waits in the listen
    // backlog). Only what the line carries — socket and certificate — has to exist before it.
    if debug {
        let json = handshake::reattach_json(
            &socket,
            std::process::id(),
            &handshake::provider_address(plugin.name),
        );
        println!(
            "Provider started in debug mode. To attach Terraform, run this in the shell where you run \
             terraform:\n\n\texport TF_REATTACH_PROVIDERS='{json}'\n\nServing until Ctrl-C."
        );
    } else {
        handshake::announce(&handshake::handshake_line(&socket, cert_der.as_deref()))?;
    }
    // Accepting (and the TLS handshake) starts now, alongside the building below.
    let tls_on = tls.is_some();
    let incoming = handshake::incoming(listener, tls);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("plugin", tonic_health::ServingStatus::Serving)
        .await;
    let shutdown = CancellationToken::new();
    let provider = ProviderServer::new(ProviderService::new((plugin.make)()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let router = Server::builder()
        .add_service(health_service)
        .add_service(goplugin::grpc_controller_server::GrpcControllerServer::new(
            Controller {
                shutdown: shutdown.clone(),
                debug,
            },
        ))
        .add_service(goplugin::grpc_stdio_server::GrpcStdioServer::new(Stdio))
        .add_service(goplugin::grpc_broker_server::GrpcBrokerServer::new(Broker))
        .add_service(provider);

    tracing::info!(socket = %socket.display(), tls = tls_on, "serving");

    if !debug {
        // If Terraform dies without calling Shutdown (crash, SIGKILL), nobody will ever dial us again: exit
        // instead of lingering as an orphan.
        let parent = std::os::unix::process::parent_id();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if std::os::unix::process::parent_id() != parent {
                    tracing::warn!("Terraform exited without shutting the provider down; exiting");
                    handshake::exit_now(1);
                }
            }
        });
        // Ctrl-C in the terminal reaches the whole process group. Like go-plugin servers we ignore it: Terraform
        // answers it with StopProvider (cancelling in-flight work) and later Shutdown.
        tokio::spawn(async {
            while tokio::signal::ctrl_c().await.is_ok() {
                tracing::debug!("interrupt received; waiting for Terraform to stop the provider");
            }
        });
    }

    // SIGTERM: leave no socket directory behind.
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::spawn(async move {
            if term.recv().await.is_some() {
                handshake::exit_now(143);
            }
        });
    }

    let stop = shutdown.clone();
    let signal = async move {
        if debug {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        } else {
            stop.cancelled().await
        }
    };
    router
        .serve_with_incoming_shutdown(incoming, signal)
        .await
        .map_err(|e| HandshakeError::Io(std::io::Error::other(e.to_string())))
}
