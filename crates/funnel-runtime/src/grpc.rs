//! What every service's gRPC server shares: health and reflection beside its
//! own services, shutdown, and the id checks at the edge.

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::transport::server::{Router, TcpIncoming};
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::Shutdown;

/// The sockets a service serves on (gRPC, admin), bound before it starts so that a
/// port in use fails at start naming its key; tests bind port 0.
pub struct Listeners {
    pub grpc: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(
        grpc: &crate::GrpcConfig,
        admin: &crate::AdminConfig,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let bind = |key: &'static str, addr: &str| {
            let addr = addr.to_owned();
            async move {
                TcpListener::bind(&addr)
                    .await
                    .with_context(|| format!("failed to bind {key} {addr}"))
            }
        };
        Ok(Listeners {
            grpc: bind("grpc.listen", &grpc.listen).await?,
            admin: bind("admin.listen", &admin.listen).await?,
        })
    }
}

/// Longest id (user, session, item) a request may carry, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// `INVALID_ARGUMENT` naming `field` when `id` is missing (and `required`)
/// or longer than [`MAX_ID_BYTES`].
pub fn check_id(field: &str, id: &str, required: bool) -> Result<(), Status> {
    if required && id.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "{field} is {} bytes, more than {MAX_ID_BYTES}",
            id.len()
        )));
    }
    Ok(())
}

/// Serves on `listener` the health service, server reflection over
/// `descriptor_set` (and health's own), and what `routes` adds, until
/// `shutdown` triggers.
pub fn spawn_server(
    listener: TcpListener,
    health: HealthServer<impl Health>,
    descriptor_set: &[u8],
    routes: impl FnOnce(Router) -> Router,
    shutdown: &Shutdown,
) -> anyhow::Result<JoinHandle<Result<(), tonic::transport::Error>>> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(descriptor_set)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| anyhow::anyhow!("failed to build gRPC reflection: {e}"))?;
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection);
    // Replies go out at once: with Nagle's algorithm on, a small response waits for the
    // client's delayed ACK (about 40 ms on Linux).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = routes(router).serve_with_incoming_shutdown(incoming, shutdown.wait());
    Ok(tokio::spawn(server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_for_presence_and_length() {
        assert!(check_id("user_id", "u-1", true).is_ok());
        assert!(check_id("session_id", "", false).is_ok());
        let missing = check_id("user_id", "", true).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::InvalidArgument);
        assert_eq!(missing.message(), "user_id is required");
        let long = check_id("item_id", &"x".repeat(129), false).unwrap_err();
        assert_eq!(long.message(), "item_id is 129 bytes, more than 128");
    }

    #[tokio::test]
    async fn a_port_in_use_fails_naming_its_key() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let taken = taken.local_addr().unwrap().to_string();
        let free = crate::AdminConfig {
            listen: "127.0.0.1:0".into(),
        };
        let err = Listeners::bind(&crate::GrpcConfig::with_listen(&taken), &free)
            .await
            .err()
            .expect("the gRPC port is taken");
        assert_eq!(
            err.to_string(),
            format!("failed to bind grpc.listen {taken}")
        );

        let admin = crate::AdminConfig {
            listen: taken.clone(),
        };
        let err = Listeners::bind(&crate::GrpcConfig::with_listen("127.0.0.1:0"), &admin)
            .await
            .err()
            .expect("the admin port is taken");
        assert_eq!(
            err.to_string(),
            format!("failed to bind admin.listen {taken}")
        );

        let bound = Listeners::bind(&crate::GrpcConfig::with_listen("127.0.0.1:0"), &free)
            .await
            .unwrap();
        assert_ne!(
            bound.grpc.local_addr().unwrap(),
            bound.admin.local_addr().unwrap()
        );
    }
}
