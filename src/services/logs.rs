//! The request log, for admins: the recent HTTP requests the server
//! answered, newest first, filtered by status class, path and whether the
//! admin UI sent them.

use serde::Deserialize;

use crate::access::AdminPermit;
use crate::error::{ApiError, ApiResult};
use crate::protocol::requests::RequestLogPage;
use crate::request_log::{StatusFilter, Wanted};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RequestLogParams {
    /// `2xx`, `4xx`, ... or `error` (4xx and 5xx).
    pub status: Option<String>,
    /// Paths starting with this (`/api/collections`).
    pub prefix: Option<String>,
    /// `false`: leave out the admin UI's own requests (those it sent with
    /// `X-Pulsebase-Client: admin-ui`); `true`: only those. Both when absent.
    pub admin_ui: Option<bool>,
    pub limit: Option<usize>,
}

pub fn requests(
    state: &AppState,
    _: &AdminPermit,
    params: RequestLogParams,
) -> ApiResult<RequestLogPage> {
    let status = params
        .status
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|text| {
            StatusFilter::parse(text).ok_or_else(|| {
                ApiError::bad_request("status must be 1xx, 2xx, 3xx, 4xx, 5xx or error")
            })
        })
        .transpose()?;
    let wanted = Wanted {
        status,
        path_prefix: params.prefix.filter(|p| !p.is_empty()),
        admin_ui: params.admin_ui,
        limit: params.limit,
    };
    Ok(state.requests.recent(&wanted))
}
