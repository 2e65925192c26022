# ctest fixture for the fuzzers: write the seeds into DIR/corpus with GEN, then give each
# driver a fresh scratch copy in DIR/work/<driver> (libFuzzer adds what it finds to it).
# cmake -DGEN=<gen_corpus> -DDIR=<dir> -P corpus.cmake
foreach(var GEN DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "corpus.cmake: -D${var}= is required")
  endif()
endforeach()

file(REMOVE_RECURSE ${DIR}/corpus ${DIR}/work)
execute_process(COMMAND ${GEN} ${DIR}/corpus RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gen_corpus failed: ${rc}")
endif()
foreach(name frame msg zstd files redact checks release)
  file(GLOB seeds ${DIR}/corpus/${name}/*)
  if(NOT seeds)
    message(FATAL_ERROR "gen_corpus wrote no seeds for ${name}")
  endif()
  file(MAKE_DIRECTORY ${DIR}/work/${name})
  file(COPY ${seeds} DESTINATION ${DIR}/work/${name})
endforeach()
file(MAKE_DIRECTORY ${DIR}/artifacts)
