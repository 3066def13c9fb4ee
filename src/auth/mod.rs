//! Token acquisition from Entra ID: the request itself (client secret or certificate assertion),
//! the shared cache every check reads, and claim decoding for diagnosis.

mod assertion;
pub mod cache;
pub mod claims;
mod client;
pub mod error;

pub use cache::TokenCache;
#[doc(hidden)]
pub use client::request_token_via;
pub use client::{request_token, AccessToken, Resource};
pub use error::TokenError;
