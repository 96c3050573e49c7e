//! The HTTP edge: a handler that takes a [`Caller`] gets the verified
//! identity of the request's bearer token, or the request is answered 401.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use crate::{AuthError, Authenticator, Caller};

impl<S> FromRequestParts<S> for Caller
where
    Authenticator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Caller, AuthError> {
        let auth = Authenticator::from_ref(state);
        let header = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| AuthError::Malformed)?),
        };
        auth.authenticate(header)
    }
}
