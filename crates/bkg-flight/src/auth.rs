//! Who a Flight caller is: the handshake's password login, bearer tokens this server issued
//! or JWTs, and the signed tickets that carry a statement from GetFlightInfo to DoGet.

use super::*;

impl BkgFlight {
    /// The caller of a request: `authorization: Bearer <handshake token or JWT>` or `Basic`.
    pub(super) fn caller(&self, md: &MetadataMap) -> Result<Caller, Status> {
        let header = md
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("authorization required: Basic (handshake) or Bearer token"))?;
        if let Some(basic) = header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic ")) {
            return self.password_login(basic.trim());
        }
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be Basic or Bearer"))?
            .trim();
        if let Some(role) = self.issued_role(token) {
            return Ok(Caller { key: format!("pw:{role}"), role, claims: None });
        }
        let principal = self.auth.authenticate(None, Some(token)).map_err(|e| match e {
            bkg_auth::AuthFailure::Missing => Status::unauthenticated("no token"),
            bkg_auth::AuthFailure::Invalid(m) => Status::unauthenticated(m),
        })?;
        match bkg_auth::token_role(&self.engine, &principal.role) {
            Ok(()) => {}
            Err(bkg_auth::TokenRoleRefusal::Missing(role)) => {
                return Err(Status::unauthenticated(format!("role \"{role}\" does not exist")));
            }
            Err(bkg_auth::TokenRoleRefusal::Superuser(role)) => {
                return Err(Status::permission_denied(format!(
                    "role \"{role}\" cannot be used with a token; log in with its password"
                )));
            }
        }
        let sub = principal.claims.get("sub").and_then(|v| v.as_str()).unwrap_or("");
        Ok(Caller {
            key: format!("jwt:{}:{sub}", principal.role),
            role: principal.role,
            claims: Some(serde_json::Value::Object(principal.claims)),
        })
    }

    pub(super) fn password_login(&self, basic: &str) -> Result<Caller, Status> {
        // Padding is optional: some clients (the Go Flight client) leave it out.
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let raw = engine
            .decode(basic)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Status::unauthenticated("malformed Basic credentials"))?;
        let (user, password) =
            raw.split_once(':').ok_or_else(|| Status::unauthenticated("malformed Basic credentials"))?;
        if let Err(wait_s) = self.login_failures.peek(user.to_string()) {
            return Err(Status::resource_exhausted(format!(
                "too many failed logins for role \"{user}\"; retry after {wait_s} s"
            )));
        }
        if !self.passwords.password_matches(user, password) {
            let _ = self.login_failures.check(user.to_string());
            return Err(status(SqlError::new(
                codes::INVALID_PASSWORD,
                format!("password authentication failed for user \"{user}\""),
            )));
        }
        Ok(Caller { key: format!("pw:{user}"), role: user.to_string(), claims: None })
    }

    pub(super) fn issued_role(&self, token: &str) -> Option<String> {
        let mut tokens = self.tokens.lock();
        let issued = tokens.get(token)?;
        if issued.expires < Instant::now() {
            tokens.remove(token);
            return None;
        }
        Some(issued.role.clone())
    }

    pub(super) fn issue_token(&self, role: &str) -> String {
        let raw: [u8; 32] = rand::random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let mut tokens = self.tokens.lock();
        let now = Instant::now();
        tokens.retain(|_, t| t.expires > now);
        if tokens.len() >= TOKENS_MAX {
            // The oldest goes first.
            if let Some(k) = tokens.iter().min_by_key(|(_, t)| t.expires).map(|(k, _)| k.clone()) {
                tokens.remove(&k);
            }
        }
        tokens.insert(token.clone(), Issued { role: role.to_string(), expires: now + self.config.token_ttl });
        token
    }

    pub(super) fn sign(&self, body: &TicketBody) -> Bytes {
        let mut bytes = serde_json::to_vec(body).expect("ticket body serialises");
        let tag = ring::hmac::sign(&self.ticket_key, &bytes);
        bytes.extend_from_slice(tag.as_ref());
        Bytes::from(bytes)
    }

    /// The body of a ticket this server signed for `caller`.
    pub(super) fn open_ticket(&self, handle: &[u8], caller: &Caller) -> Result<TicketBody, Status> {
        let bad = || invalid("invalid ticket");
        if handle.len() < 32 {
            return Err(bad());
        }
        let (body, tag) = handle.split_at(handle.len() - 32);
        ring::hmac::verify(&self.ticket_key, body, tag).map_err(|_| bad())?;
        let body: TicketBody = serde_json::from_slice(body).map_err(|_| bad())?;
        if body.p != caller.key {
            return Err(status(SqlError::new(
                codes::INSUFFICIENT_PRIVILEGE,
                "the ticket was issued to another principal",
            )));
        }
        if body.e < chrono::Utc::now().timestamp() {
            return Err(invalid("the ticket has expired; ask for a new FlightInfo"));
        }
        Ok(body)
    }

    pub(super) fn ticket_info(
        &self,
        schema: &Schema,
        body: TicketBody,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let ticket = TicketStatementQuery { statement_handle: self.sign(&body) };
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| status(e.into()))
            .map(|i| i.with_endpoint(endpoint).with_descriptor(descriptor).with_ordered(true))
    }

    pub(super) fn expiry(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.config.ticket_ttl.as_secs() as i64
    }
}

pub(crate) fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Result<Vec<u8>, ()> {
    if !s.len().is_multiple_of(2) {
        return Err(());
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| ())).collect()
}
