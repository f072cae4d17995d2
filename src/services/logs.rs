//! The request log, for admins: the recent HTTP requests the server
//! answered, newest first, filtered by status class and path.

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
        limit: params.limit,
    };
    Ok(RequestLogPage {
        items: state.requests.recent(&wanted),
        capacity: state.requests.capacity(),
    })
}
