//! The one place where engine errors become HTTP status codes and Docker's error JSON
//! (`{"message": "..."}`, see the Engine API's `ErrorResponse`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, "{}", self.message);
        } else {
            tracing::debug!(status = %self.status, "{}", self.message);
        }
        (
            self.status,
            // Docker's `ErrorResponse`.
            axum::Json(bollard_stubs::models::ErrorResponse {
                message: self.message,
            }),
        )
            .into_response()
    }
}

fn status_of_image(kind: barge_image::ErrorKind) -> StatusCode {
    match kind {
        barge_image::ErrorKind::NotFound => StatusCode::NOT_FOUND,
        barge_image::ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        barge_image::ErrorKind::Conflict => StatusCode::CONFLICT,
        barge_image::ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn status_of_container(kind: barge_container::ErrorKind) -> StatusCode {
    match kind {
        barge_container::ErrorKind::NotFound => StatusCode::NOT_FOUND,
        barge_container::ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        barge_container::ErrorKind::Conflict => StatusCode::CONFLICT,
        barge_container::ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<barge_image::ImageError> for ApiError {
    fn from(e: barge_image::ImageError) -> Self {
        ApiError::new(status_of_image(e.kind()), e.to_string())
    }
}

impl From<barge_container::ContainerError> for ApiError {
    fn from(e: barge_container::ContainerError) -> Self {
        ApiError::new(status_of_container(e.kind()), e.to_string())
    }
}

impl From<barge_container::volumes::VolumeError> for ApiError {
    fn from(e: barge_container::volumes::VolumeError) -> Self {
        use barge_container::volumes::VolumeErrorKind as K;
        let status = match e.kind() {
            K::NotFound => StatusCode::NOT_FOUND,
            K::InvalidInput => StatusCode::BAD_REQUEST,
            K::Conflict => StatusCode::CONFLICT,
            K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::internal(e.to_string())
    }
}
