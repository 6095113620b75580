// Stops what the global setup started (the stack, and `vite preview` if it ran), whatever the
// tests did.
import { stopStack } from "./stack";

export default function globalTeardown() {
  stopStack();
}
