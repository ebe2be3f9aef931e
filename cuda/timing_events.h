// A pool of CUDA events for timing work on a stream (engine/op_profile.cpp). Plain C++ header.
#pragma once

namespace sal::cuda {

// Queues an event on `stream` (cudaStream_t; null: the legacy default stream) and returns its index in
// the pool, or -1 when the stream is capturing a CUDA graph (an event there would be a graph node, not a
// time). Events are created on first need and reused after timing_events_clear().
int timing_event_record(void* stream);
// Milliseconds between two recorded events; waits for `stop`.
float timing_event_elapsed_ms(int start, int stop);
// Every event is free again (their times must have been read).
void timing_events_clear();

}  // namespace sal::cuda
