// Stops the stack the global setup started, whatever the tests did.
import { stopStack } from "./stack";

export default function globalTeardown() {
  stopStack();
}
