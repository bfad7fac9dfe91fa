"use client";

import { CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import type { MetricsSample } from "@/lib/api";

export interface Series {
  key: string;
  label: string;
  pick: (s: MetricsSample) => number | null;
}

const COLORS = ["--chart-1", "--chart-2", "--chart-3", "--chart-4", "--chart-5"];

function hhmmss(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleTimeString(undefined, { hour12: false });
}

export function MetricChart({
  samples,
  series,
  unit,
  title,
  format,
  small,
}: {
  samples: MetricsSample[];
  series: Series[];
  unit?: string;
  title: string;
  /** Formats the axis ticks and tooltip values (e.g. bytes/s); `unit` is then ignored. */
  format?: (v: number) => string;
  /** A shorter chart (the Overview's). */
  small?: boolean;
}) {
  const data = samples.map((s) => {
    const row: Record<string, number | string | null> = { time: hhmmss(s.time) };
    for (const ser of series) {
      const v = ser.pick(s);
      row[ser.key] = v == null ? null : Math.round(v * 100) / 100;
    }
    return row;
  });
  return (
    <figure className={small ? "h-40 w-full" : "h-56 w-full"} aria-label={title}>
      <ResponsiveContainer width="100%" height="100%">
        <LineChart data={data} margin={{ top: 8, right: 8, bottom: 0, left: -12 }}>
          <CartesianGrid strokeDasharray="3 3" stroke="hsl(var(--border))" />
          <XAxis dataKey="time" tick={{ fontSize: 11, fill: "hsl(var(--muted-foreground))" }} minTickGap={32} />
          <YAxis
            tick={{ fontSize: 11, fill: "hsl(var(--muted-foreground))" }}
            unit={format ? undefined : unit}
            tickFormatter={format ? (v: number) => format(v) : undefined}
            width={format ? 72 : 60}
            allowDecimals
          />
          <Tooltip
            formatter={format ? (v: unknown) => (typeof v === "number" ? format(v) : String(v)) : undefined}
            contentStyle={{ background: "hsl(var(--popover))", border: "1px solid hsl(var(--border))", color: "hsl(var(--popover-foreground))", fontSize: 12 }}
          />
          <Legend wrapperStyle={{ fontSize: 12 }} />
          {series.map((s, i) => (
            <Line
              key={s.key}
              type="monotone"
              dataKey={s.key}
              name={s.label}
              stroke={`hsl(var(${COLORS[i % COLORS.length]}))`}
              dot={false}
              isAnimationActive={false}
              connectNulls
            />
          ))}
        </LineChart>
      </ResponsiveContainer>
    </figure>
  );
}
