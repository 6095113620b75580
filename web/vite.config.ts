// Vite builds the dashboard into dist/ (served by the local gateway, or by any static host in
// front of the API in AWS). `npm run dev` proxies the API to SYNCBRIDGE_API_URL (a local stack's
// gateway), so the app always talks to same-origin relative URLs.
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

const api = process.env.SYNCBRIDGE_API_URL;
const proxy = api ? { "/v1": api, "/config.json": api } : undefined;

export default defineConfig({
  base: "/",
  plugins: [react()],
  build: { sourcemap: false, chunkSizeWarningLimit: 300 },
  server: { host: "127.0.0.1", proxy },
  preview: { host: "127.0.0.1", proxy },
});
