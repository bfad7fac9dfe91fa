import type { NewPolicy, PolicyCommand } from "./api/types";

export type TemplateId = "owner" | "public-read" | "authenticated-read" | "admin-claim" | "custom";

export interface TemplateInput {
  table: string;
  /** Column compared with `auth.uid()` (owner template). */
  column?: string;
  command?: PolicyCommand;
  name?: string;
  roles?: string[];
  using?: string;
  withCheck?: string;
}

export interface TemplateInfo {
  id: TemplateId;
  label: string;
  description: string;
  needsColumn: boolean;
}

export const TEMPLATES: TemplateInfo[] = [
  {
    id: "owner",
    label: "Owner only",
    description: "Rows are visible and writable only by the user whose id is in the owner column.",
    needsColumn: true,
  },
  {
    id: "public-read",
    label: "Public read",
    description: "Anyone, signed in or not, can read every row.",
    needsColumn: false,
  },
  {
    id: "authenticated-read",
    label: "Signed-in users read",
    description: "Every signed-in user can read every row.",
    needsColumn: false,
  },
  {
    id: "admin-claim",
    label: "Admin claim",
    description: "Only tokens whose app_metadata has admin = true can do this.",
    needsColumn: false,
  },
  { id: "custom", label: "Custom", description: "Write the USING and WITH CHECK expressions yourself.", needsColumn: false },
];

const IDENT = /^[A-Za-z_][A-Za-z0-9_$]*$/;

/** Quotes an identifier when it needs quoting. */
export function quoteIdent(name: string): string {
  return IDENT.test(name) && name === name.toLowerCase() ? name : `"${name.replace(/"/g, '""')}"`;
}

function bareTable(table: string): string {
  const parts = table.split(".");
  return parts[parts.length - 1] ?? table;
}

export class TemplateError extends Error {}

/** Builds the NewPolicy body a template stands for. */
export function generatePolicy(id: TemplateId, input: TemplateInput): NewPolicy {
  const table = input.table.trim();
  if (!table) throw new TemplateError("choose a table");
  const base = bareTable(table).replace(/[^A-Za-z0-9_]/g, "_");
  switch (id) {
    case "owner": {
      const column = (input.column ?? "").trim();
      if (!column) throw new TemplateError("choose the owner column");
      const expr = `${quoteIdent(column)} = auth.uid()`;
      const command = input.command ?? "all";
      return {
        table,
        name: input.name?.trim() || `${base}_owner_${command}`,
        command,
        permissive: true,
        roles: input.roles ?? ["authenticated"],
        using: command === "insert" ? null : expr,
        with_check: command === "select" || command === "delete" ? null : expr,
      };
    }
    case "public-read":
      return {
        table,
        name: input.name?.trim() || `${base}_public_read`,
        command: "select",
        permissive: true,
        roles: input.roles ?? ["anon", "authenticated"],
        using: "true",
        with_check: null,
      };
    case "authenticated-read":
      return {
        table,
        name: input.name?.trim() || `${base}_authenticated_read`,
        command: "select",
        permissive: true,
        roles: input.roles ?? ["authenticated"],
        using: "true",
        with_check: null,
      };
    case "admin-claim": {
      const expr = "(auth.jwt() -> 'app_metadata' ->> 'admin')::boolean = true";
      const command = input.command ?? "all";
      return {
        table,
        name: input.name?.trim() || `${base}_admin_${command}`,
        command,
        permissive: true,
        roles: input.roles ?? ["authenticated"],
        using: command === "insert" ? null : expr,
        with_check: command === "select" || command === "delete" ? null : expr,
      };
    }
    case "custom": {
      const name = input.name?.trim();
      if (!name) throw new TemplateError("name the policy");
      const using = input.using?.trim() || null;
      const withCheck = input.withCheck?.trim() || null;
      if (!using && !withCheck) throw new TemplateError("write a USING or a WITH CHECK expression");
      return {
        table,
        name,
        command: input.command ?? "all",
        permissive: true,
        roles: input.roles && input.roles.length ? input.roles : ["public"],
        using,
        with_check: withCheck,
      };
    }
  }
}

/** The SQL the policy amounts to, for the preview. */
export function policySql(p: NewPolicy): string {
  const lines = [`CREATE POLICY ${quoteIdent(p.name)} ON ${p.table.split(".").map(quoteIdent).join(".")}`];
  if (p.permissive === false) lines.push("  AS RESTRICTIVE");
  lines.push(`  FOR ${(p.command ?? "all").toUpperCase()}`);
  lines.push(`  TO ${(p.roles && p.roles.length ? p.roles : ["public"]).join(", ")}`);
  if (p.using) lines.push(`  USING (${p.using})`);
  if (p.with_check) lines.push(`  WITH CHECK (${p.with_check})`);
  return lines.join("\n") + ";";
}
