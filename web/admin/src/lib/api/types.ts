// Shapes of the bkg-db admin API, as answered by the server.

export interface Bootstrap {
  version: string;
  anon_key: string;
}

export interface WhoAmI {
  role: string;
  user_id: string | null;
  email: string | null;
  admin: boolean;
  service_role?: boolean;
}

export interface Health {
  status: string;
  uptime_s: number;
  version: string;
}

export interface TableStat {
  schema: string;
  name: string;
  rows: number | null;
  /** Bytes of the table's last snapshot (null before its first checkpoint). */
  snapshot_bytes?: number | null;
  bytes?: number | null;
  rls_enabled: boolean;
  rls_forced: boolean;
  policies: number;
}

export interface Overview {
  version: string;
  started_at: string;
  uptime_s: number;
  data_dir: string;
  data_dir_bytes: number;
  data_dir_bytes_partial?: boolean;
  wal_bytes: number;
  wal_bytes_since_checkpoint?: number;
  last_checkpoint: { at: string; lsn: string | number } | null;
  listeners: { http: string | null; pgwire: string | null; flight: string | null };
  /** Open connections per front door (http and flight are absent on older servers). */
  connections: { pgwire: number; http?: number; flight?: number; realtime: number };
  totals: {
    commits: number;
    rollbacks?: number;
    statements: number;
    statement_errors?: number;
    http_requests: number;
    http_errors?: number;
  };
  tables: TableStat[];
  tables_truncated?: boolean;
}

export interface MetricsSample {
  time: string;
  commits_per_s: number;
  statements_per_s: number;
  http_requests_per_s: number;
  http_errors_per_s: number;
  http_latency_ms: { p50: number | null; p95: number | null; p99: number | null };
  pgwire_connections: number;
  /** Absent on older servers and in samples computed from /metrics. */
  http_connections?: number | null;
  flight_connections?: number | null;
  realtime_clients: number;
  storage_bytes_in_per_s: number;
  storage_bytes_out_per_s: number;
}

export interface MetricsHistory {
  interval_s: number;
  samples: MetricsSample[];
  errors_by_code: Record<string, number>;
}

export interface SlowStatement {
  time: string;
  duration_ms: number;
  door: string;
  role: string;
  statement: string;
  sqlstate: string | null;
}

export interface SlowStatements {
  threshold_ms: number;
  statements: SlowStatement[];
}

export interface Telemetry {
  enabled: boolean;
  sampling_rate: number;
  spans_exported: number;
  spans_dropped: number;
  export_failures: number;
}

export type PolicyCommand = "all" | "select" | "insert" | "update" | "delete";

export interface Policy {
  table: string;
  name: string;
  command: PolicyCommand;
  permissive: boolean;
  roles: string[];
  using: string | null;
  with_check: string | null;
}

export interface PoliciesPage {
  policies: Policy[];
  /** From `x-total-count` (the length of the list when the server does not send it). */
  total: number;
}

export interface PolicyListOptions {
  /** Only this table's policies (`schema.table`). */
  table?: string;
  limit?: number;
  offset?: number;
}

export interface NewPolicy {
  table: string;
  name: string;
  command?: PolicyCommand | null;
  permissive?: boolean | null;
  roles?: string[];
  using?: string | null;
  with_check?: string | null;
}

export type PolicyPatch = Partial<Omit<NewPolicy, "table">>;

export interface ExplainRequest {
  table: string;
  command: Exclude<PolicyCommand, "all">;
  claims?: Record<string, unknown>;
  role?: string | null;
  row?: Record<string, unknown> | null;
}

export interface ExplainPolicy extends Policy {
  applies_to_command: boolean;
  applies_to_role: boolean;
  using_bound?: string | null;
  using_result?: boolean | null;
  with_check_bound?: string | null;
  with_check_result?: boolean | null;
}

export interface ExplainCheck {
  check: string;
  command: string;
  predicate: string | null;
  result: boolean | null;
}

export interface ExplainResponse {
  allowed: boolean;
  reason: string;
  bypass?: boolean;
  row_security?: boolean;
  role?: string;
  table?: string;
  command?: string;
  policies: ExplainPolicy[];
  checks: ExplainCheck[];
}

export interface AuditActor {
  role: string;
  user_id?: string | null;
  token_id?: string | null;
  address?: string | null;
}

export interface AuditEvent {
  seq: number;
  id: string;
  time: string;
  actor: AuditActor;
  action: string;
  object: string | null;
  outcome: "success" | "failure";
  request_id?: string | null;
  detail?: unknown;
  prev?: string | null;
}

export interface AuditPage {
  events: AuditEvent[];
  next_before: number | null;
}

export interface AuditFilter {
  action?: string;
  actor?: string;
  outcome?: "" | "success" | "failure";
  since?: string;
  until?: string;
}

export interface AuditVerify {
  ok: boolean;
  segments: number;
  events: number;
  /** Sealed (signed) segments. */
  signed?: number;
  head_seq?: number;
  head_hash?: string;
  open_segment?: string;
  key_ids?: string[];
  first_bad: { segment: string | number; line: number; reason: string } | null;
}

export interface AuditKey {
  key_id: string;
  public_key: string;
}

export interface AuthUser {
  id: string;
  email: string | null;
  phone?: string;
  role?: string;
  aud?: string;
  created_at: string;
  updated_at?: string;
  confirmed_at?: string | null;
  email_confirmed_at?: string | null;
  last_sign_in_at?: string | null;
  banned_until?: string | null;
  user_metadata?: Record<string, unknown>;
  app_metadata?: Record<string, unknown>;
}

export interface UsersPage {
  users: AuthUser[];
  total: number;
}

export interface NewUser {
  email: string;
  password: string;
  email_confirm?: boolean;
  user_metadata?: Record<string, unknown>;
  app_metadata?: Record<string, unknown>;
}

export interface UserUpdate {
  email?: string;
  password?: string;
  email_confirm?: boolean;
  ban_duration?: string;
  user_metadata?: Record<string, unknown>;
  app_metadata?: Record<string, unknown>;
}

export interface UserSession {
  id: string;
  created_at: string;
  updated_at?: string;
}

export interface TokenResponse {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  expires_at?: number;
  token_type: string;
  user: AuthUser;
}

export interface QueryColumn {
  name: string;
  type: string;
}

export interface QueryResult {
  command: string;
  columns?: QueryColumn[];
  rows?: Record<string, unknown>[];
}

export interface QueryResponse {
  results: QueryResult[];
}

export interface SigningKey {
  kid: string;
  alg: string;
  state: "signing" | "verifying" | "retired";
  created_at: string;
}

export interface KeysInfo {
  algorithm: string;
  signing_keys: SigningKey[];
}

export interface RotatedApiKeys {
  anon_key: string;
  service_key: string;
}
