//! Generated protobuf messages and gRPC stubs for the Funnel wire contract.
//!
//! # Layout
//! - [`pb::events::v1`]: raw and canonical events, catalog items.
//! - [`pb::ingest::v1`]: the `Features` service of ingest.
//! - [`pb::behavior::v1`]: intent predictions, conversion actions and the
//!   `BehaviorPredictor` service.
//! - [`pb::recommender::v1`]: the `Recommender` service and the `Recommendation` log.
//! - [`FILE_DESCRIPTOR_SET`]: the events and ingest protos, for gRPC server reflection;
//!   [`BEHAVIOR_FILE_DESCRIPTOR_SET`]: the behavior proto;
//!   [`RECOMMENDER_FILE_DESCRIPTOR_SET`]: the recommender proto.
//!
//! `proto/` at the workspace root is the source of truth; nothing else lives here.

pub mod pb {
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("funnel.events.v1");
        }
    }
    pub mod ingest {
        pub mod v1 {
            tonic::include_proto!("funnel.ingest.v1");
        }
    }
    pub mod behavior {
        pub mod v1 {
            tonic::include_proto!("funnel.behavior.v1");
        }
    }
    pub mod recommender {
        pub mod v1 {
            tonic::include_proto!("funnel.recommender.v1");
        }
    }
}

/// Encoded `FileDescriptorSet` of all Funnel protos, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("funnel_descriptor");

/// Encoded `FileDescriptorSet` of `funnel.behavior.v1`, for behavior-predictor's reflection.
pub const BEHAVIOR_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("behavior_descriptor");

/// Encoded `FileDescriptorSet` of `funnel.recommender.v1`, for the recommender's reflection.
pub const RECOMMENDER_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("recommender_descriptor");
