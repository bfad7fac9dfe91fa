"use client";

import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { api, ApiError, toApiError } from "@/lib/api";
import { quoteIdent } from "@/lib/policy-templates";

export interface CatalogTable {
  schema: string;
  name: string;
  rls_enabled: boolean;
  rls_forced: boolean;
  /** Rows visible to the signed-in principal (row-level security applies), or the error. */
  rows: number | null;
  rowsError: ApiError | null;
}

export interface TablesPage {
  tables: CatalogTable[];
  total: number;
  /** Only the tables the principal may SELECT from are listed (`has_table_privilege`). */
  readableOnly: boolean;
  /**
   * Tables of this page left out because counting them was refused (42501): only when the
   * privilege filter was asked for but the server could not apply it.
   */
  unreadable: number;
}

const HIDDEN_SCHEMAS = "('pg_catalog', 'information_schema')";

export const tableKeys = {
  page: (page: number, perPage: number, readableOnly: boolean) => ["tables", page, perPage, readableOnly] as const,
  columns: (table: string) => ["tables", "columns", table] as const,
  names: ["tables", "names"] as const,
};

function num(v: unknown): number {
  return typeof v === "number" ? v : Number(v ?? 0);
}

const FROM = "pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace";
const USER_TABLES = `c.relkind = 'r' and n.nspname not in ${HIDDEN_SCHEMAS}`;
const READABLE = "has_table_privilege(current_user, c.oid, 'SELECT')";

async function countTables(where: string): Promise<number> {
  const res = await api.system.query(`select count(*) as n from ${FROM} where ${where}`);
  return num(res.results[0]?.rows?.[0]?.n);
}

/**
 * A page of tables from the catalog, each with the count of rows the principal may see.
 * `readableOnly` lists only the tables the principal may SELECT from; should the server not know
 * `has_table_privilege`, every table is listed and those refused (42501) are only counted.
 */
export async function fetchTablesPage(page: number, perPage: number, readableOnly = false): Promise<TablesPage> {
  let where = USER_TABLES;
  let filtered = false;
  let total: number;
  if (readableOnly) {
    try {
      total = await countTables(`${USER_TABLES} and ${READABLE}`);
      where = `${USER_TABLES} and ${READABLE}`;
      filtered = true;
    } catch {
      total = await countTables(USER_TABLES);
    }
  } else {
    total = await countTables(USER_TABLES);
  }
  const res = await api.system.query(
    `select n.nspname as schema, c.relname as name, c.relrowsecurity as rls_enabled, c.relforcerowsecurity as rls_forced
       from ${FROM}
      where ${where}
      order by (n.nspname = 'public') desc, n.nspname, c.relname
      limit ${Math.max(1, Math.floor(perPage))} offset ${Math.max(0, Math.floor((page - 1) * perPage))}`,
  );
  const rows = res.results[0]?.rows ?? [];
  const all = await Promise.all(
    rows.map(async (r): Promise<CatalogTable> => {
      const schema = String(r.schema);
      const name = String(r.name);
      let count: number | null = null;
      let rowsError: ApiError | null = null;
      try {
        const c = await api.system.query(`select count(*) as n from ${quoteIdent(schema)}.${quoteIdent(name)}`);
        count = num(c.results[0]?.rows?.[0]?.n);
      } catch (e) {
        rowsError = toApiError(e);
      }
      return { schema, name, rls_enabled: r.rls_enabled === true, rls_forced: r.rls_forced === true, rows: count, rowsError };
    }),
  );
  const collapse = readableOnly && !filtered;
  const tables = collapse ? all.filter((t) => t.rowsError?.code !== "42501") : all;
  return { tables, total, readableOnly: filtered, unreadable: all.length - tables.length };
}

export function useTablesPage(page: number, perPage: number, readableOnly = false, enabled = true) {
  return useQuery({
    queryKey: tableKeys.page(page, perPage, readableOnly),
    queryFn: () => fetchTablesPage(page, perPage, readableOnly),
    placeholderData: keepPreviousData,
    enabled,
  });
}

/** Qualified names of the user tables (for the policy and explain forms). */
export function useTableNames(enabled = true) {
  return useQuery({
    queryKey: tableKeys.names,
    enabled,
    queryFn: async () => {
      const res = await api.system.query(
        `select n.nspname as schema, c.relname as name from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
          where c.relkind = 'r' and n.nspname not in ${HIDDEN_SCHEMAS} order by (n.nspname = 'public') desc, n.nspname, c.relname limit 500`,
      );
      return (res.results[0]?.rows ?? []).map((r) => `${String(r.schema)}.${String(r.name)}`);
    },
  });
}

/** Column names and types of one `schema.table`. */
export function useTableColumns(table: string) {
  return useQuery({
    queryKey: tableKeys.columns(table),
    enabled: !!table,
    queryFn: async () => {
      const [schema, name] = table.includes(".") ? table.split(".", 2) : ["public", table];
      const res = await api.system.query(
        "select column_name as name, data_type as type from information_schema.columns where table_schema = $1 and table_name = $2 order by ordinal_position",
        [schema, name],
      );
      return (res.results[0]?.rows ?? []).map((r) => ({ name: String(r.name), type: String(r.type) }));
    },
  });
}
