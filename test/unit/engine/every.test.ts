/**
 * every(): periods beyond Node's timer limit (2^31-1 ms) are waited out,
 * not turned into 1 ms (what setInterval does with GCS_SWEEP_SECONDS=30 days).
 */
import { every } from "../../../server/engine/every.js";

const DAY = 86_400_000;

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

test("a 30-day period fires once in 30 days, not every millisecond", () => {
  const fn = jest.fn();
  const stop = every(30 * DAY, fn);
  jest.advanceTimersByTime(1000);
  expect(fn).not.toHaveBeenCalled();
  jest.advanceTimersByTime(30 * DAY - 1000 - 1);
  expect(fn).not.toHaveBeenCalled();
  jest.advanceTimersByTime(1);
  expect(fn).toHaveBeenCalledTimes(1);
  jest.advanceTimersByTime(30 * DAY);
  expect(fn).toHaveBeenCalledTimes(2);
  stop();
  jest.advanceTimersByTime(90 * DAY);
  expect(fn).toHaveBeenCalledTimes(2);
});

test("a short period repeats and stops", () => {
  const fn = jest.fn();
  const stop = every(100, fn);
  jest.advanceTimersByTime(1050);
  expect(fn).toHaveBeenCalledTimes(10);
  stop();
  jest.advanceTimersByTime(1000);
  expect(fn).toHaveBeenCalledTimes(10);
});
