//! `funnel.ingest.v1.Features`: synchronous feature lookups.

use funnel_proto::pb::ingest::v1 as pb;
use funnel_proto::pb::ingest::v1::features_server::Features;
use funnel_runtime::grpc::check_id;
use funnel_store::FeatureReader;
use tonic::{Request, Response, Status};

const DEFAULT_NEIGHBOURS: u32 = 20;
const MAX_NEIGHBOURS: u32 = 200;

/// The gRPC edge: validates requests, maps store failures to `UNAVAILABLE`
/// without leaking their text.
pub struct FeaturesService {
    reader: FeatureReader,
}

impl FeaturesService {
    pub fn new(reader: FeatureReader) -> Self {
        FeaturesService { reader }
    }
}

fn unavailable(e: funnel_store::StoreError) -> Status {
    tracing::error!(error = %e, "feature store read failed");
    Status::unavailable("feature store unavailable")
}

#[tonic::async_trait]
impl Features for FeaturesService {
    async fn get_user_features(
        &self,
        request: Request<pb::GetUserFeaturesRequest>,
    ) -> Result<Response<pb::UserFeatures>, Status> {
        let req = request.into_inner();
        check_id("user_id", &req.user_id, true)?;
        let features = self.reader.user(&req.user_id).await.map_err(unavailable)?;
        Ok(Response::new(features))
    }

    async fn get_item_features(
        &self,
        request: Request<pb::GetItemFeaturesRequest>,
    ) -> Result<Response<pb::ItemFeatures>, Status> {
        let req = request.into_inner();
        check_id("item_id", &req.item_id, true)?;
        let neighbours = match req.neighbours {
            0 => DEFAULT_NEIGHBOURS,
            n if n > MAX_NEIGHBOURS => {
                return Err(Status::invalid_argument(format!(
                    "neighbours is {n}, at most {MAX_NEIGHBOURS}"
                )));
            }
            n => n,
        };
        let features = self
            .reader
            .item(&req.item_id, neighbours as usize, funnel_core::now_ms())
            .await
            .map_err(unavailable)?;
        Ok(Response::new(features))
    }
}
