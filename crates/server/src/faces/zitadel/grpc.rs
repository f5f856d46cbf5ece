//! gRPC (what `@zitadel/client`'s `createServerTransport` speaks, over h2c or TLS) and gRPC-Web
//! (HTTP/1.1 and 2), by tonic and tonic-web.

use std::sync::Arc;

use enroll_core::service::Enroll;
use enroll_zitadel_proto::zitadel::user::v2::user_service_server::{
    UserService, UserServiceServer,
};
use enroll_zitadel_proto::zitadel::user::v2::{
    AddHumanUserRequest, AddHumanUserResponse, ResendEmailCodeRequest, ResendEmailCodeResponse,
    SendEmailCodeRequest, SendEmailCodeResponse, SetEmailRequest, SetEmailResponse,
    VerifyEmailRequest, VerifyEmailResponse,
};
use tonic::{Request, Response, Status};
use tonic_web::GrpcWebService;
use tower::Layer as _;

use super::call::Call;
use super::error::ZitadelError;
use super::{email, users};

/// The requests of this API are small; tonic's default allows 4 MiB.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

pub type GrpcService = GrpcWebService<UserServiceServer<Grpc>>;

/// Answers `application/grpc*` and `application/grpc-web*` requests.
pub fn service(enroll: Arc<Enroll>) -> GrpcService {
    let server =
        UserServiceServer::new(Grpc { enroll }).max_decoding_message_size(MAX_MESSAGE_BYTES);
    tonic_web::GrpcWebLayer::new().layer(server)
}

pub struct Grpc {
    enroll: Arc<Enroll>,
}

impl Grpc {
    async fn call<Req, Res, Fut>(
        &self,
        request: Request<Req>,
        method: impl FnOnce(Call, Req) -> Fut,
    ) -> Result<Response<Res>, Status>
    where
        Fut: Future<Output = Result<Res, ZitadelError>>,
    {
        let (metadata, _, message) = request.into_parts();
        let answer = async {
            let call = Call::authenticate(self.enroll.clone(), &metadata.into_headers()).await?;
            method(call, message).await
        };
        answer
            .await
            .map(Response::new)
            .map_err(ZitadelError::into_status)
    }
}

#[tonic::async_trait]
impl UserService for Grpc {
    async fn add_human_user(
        &self,
        request: Request<AddHumanUserRequest>,
    ) -> Result<Response<AddHumanUserResponse>, Status> {
        self.call(request, users::add_human_user).await
    }

    async fn set_email(
        &self,
        request: Request<SetEmailRequest>,
    ) -> Result<Response<SetEmailResponse>, Status> {
        self.call(request, email::set_email).await
    }

    async fn resend_email_code(
        &self,
        request: Request<ResendEmailCodeRequest>,
    ) -> Result<Response<ResendEmailCodeResponse>, Status> {
        self.call(request, email::resend_email_code).await
    }

    async fn send_email_code(
        &self,
        request: Request<SendEmailCodeRequest>,
    ) -> Result<Response<SendEmailCodeResponse>, Status> {
        self.call(request, email::send_email_code).await
    }

    async fn verify_email(
        &self,
        request: Request<VerifyEmailRequest>,
    ) -> Result<Response<VerifyEmailResponse>, Status> {
        self.call(request, email::verify_email).await
    }
}
