import Link from "next/link";

export default function NotFound() {
  return (
    <main className="flex min-h-screen flex-col items-center justify-center gap-2">
      <h1 className="text-xl font-semibold">Not found</h1>
      <Link className="text-sm underline" href="/dashboard/">
        Back to the overview
      </Link>
    </main>
  );
}
