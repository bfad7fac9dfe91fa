"use client";

import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, type NewUser, type UserUpdate } from "@/lib/api";

export const userKeys = {
  all: ["users"] as const,
  page: (page: number, perPage: number, filter: string) => ["users", "page", page, perPage, filter] as const,
  sessions: (id: string) => ["users", "sessions", id] as const,
  me: ["users", "me"] as const,
};

export function useUsersPage(page: number, perPage: number, filter: string, enabled: boolean) {
  return useQuery({
    queryKey: userKeys.page(page, perPage, filter),
    queryFn: () => api.users.list({ page, perPage, filter: filter || undefined }),
    placeholderData: keepPreviousData,
    enabled,
  });
}

/** Every user id → e-mail on the first page (for the explain form's user picker). */
export function useUserChoices(enabled: boolean) {
  return useQuery({
    queryKey: userKeys.page(1, 100, ""),
    queryFn: () => api.users.list({ page: 1, perPage: 100 }),
    enabled,
  });
}

export function useCurrentUser(enabled: boolean) {
  return useQuery({ queryKey: userKeys.me, queryFn: api.auth.currentUser, enabled });
}

export function useUserSessions(id: string | null, enabled: boolean) {
  return useQuery({
    queryKey: userKeys.sessions(id ?? ""),
    queryFn: () => api.users.sessions(id as string),
    enabled: enabled && !!id,
    staleTime: 0,
  });
}

export function useCreateUser() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (u: NewUser) => api.users.create(u),
    onSuccess: () => qc.invalidateQueries({ queryKey: userKeys.all }),
  });
}

export function useUpdateUser() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (v: { id: string; update: UserUpdate }) => api.users.update(v.id, v.update),
    onSuccess: () => qc.invalidateQueries({ queryKey: userKeys.all }),
  });
}

export function useDeleteUser() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (id: string) => api.users.remove(id),
    onSuccess: () => qc.invalidateQueries({ queryKey: userKeys.all }),
  });
}

export function useSignOutEverywhere() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (id: string) => api.users.signOutEverywhere(id),
    onSuccess: (_d, id) => qc.invalidateQueries({ queryKey: userKeys.sessions(id) }),
  });
}
