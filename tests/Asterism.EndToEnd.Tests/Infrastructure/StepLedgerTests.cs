namespace Asterism.EndToEnd.Tests.Infrastructure;

/// <summary>
/// The mechanism that keeps one failed step from failing every later step of its class (issue 13 item 7). Needs no
/// cluster. <see cref="StepFramework"/> asks the ledger before each test method and tells it how the method ended;
/// seen once by hand on a class whose step 2 failed: step 3 was reported "Skipped … skipped because step 2 (B_Fails)
/// failed", the AfterFailure step and a test without a step ran.
/// </summary>
public sealed class StepLedgerTests
{
    [Fact]
    public void SkipReason_AfterAFailedStep_LaterStepsSkippedNamingIt()
    {
        var ledger = new StepLedger();
        ledger.Record(new StepAttribute(1), "Init", failed: false);
        ledger.Record(new StepAttribute(2), "Outage", failed: true);

        Assert.Equal("skipped because step 2 (Outage) failed: this step needs the shared cluster that step left behind", ledger.SkipReason(new StepAttribute(3)));
        Assert.Equal(ledger.SkipReason(new StepAttribute(3)), ledger.SkipReason(new StepAttribute(7)));
    }

    [Fact]
    public void SkipReason_NoFailure_NothingSkipped()
    {
        var ledger = new StepLedger();
        ledger.Record(new StepAttribute(1), "Init", failed: false);

        Assert.Null(ledger.SkipReason(new StepAttribute(2)));
    }

    [Fact]
    public void SkipReason_AfterFailureStepOrNoStep_RunsAnyway()
    {
        var ledger = new StepLedger();
        ledger.Record(new StepAttribute(1), "Init", failed: true);

        Assert.Null(ledger.SkipReason(new StepAttribute(99) { AfterFailure = true }));
        Assert.Null(ledger.SkipReason(null));
    }

    [Fact]
    public void Record_LaterFailures_TheFirstStaysNamed()
    {
        var ledger = new StepLedger();
        ledger.Record(new StepAttribute(2), "Outage", failed: true);
        ledger.Record(new StepAttribute(99) { AfterFailure = true }, "Terminate", failed: true);

        Assert.StartsWith("skipped because step 2 (Outage) failed", ledger.SkipReason(new StepAttribute(100)), StringComparison.Ordinal);
    }

    [Fact]
    public void Passed_FailedAndSkippedSteps_OnlyStepsThatRanToTheirEnd()
    {
        var ledger = new StepLedger();
        ledger.Record(new StepAttribute(1), "Init", failed: false);
        ledger.Record(new StepAttribute(2), "Outage", failed: true);
        ledger.Record(new StepAttribute(3), "Later", failed: false, ran: false);
        ledger.Record(new StepAttribute(98) { AfterFailure = true }, "Leaks", failed: false);

        Assert.True(ledger.Passed(1));
        Assert.False(ledger.Passed(2));
        Assert.False(ledger.Passed(3));
        Assert.True(ledger.Passed(98));
    }

    [Fact]
    public void Of_AfterStart_TheRunningClassesLedger()
    {
        var started = StepLedger.Start(typeof(StepLedgerTests));
        started.Record(new StepAttribute(4), "Step", failed: false);

        Assert.Same(started, StepLedger.Of(typeof(StepLedgerTests)));
        Assert.NotSame(started, StepLedger.Start(typeof(StepLedgerTests)));
        Assert.False(StepLedger.Of(typeof(StepLedgerTests)).Passed(4));
    }

    [Fact]
    public void Assembly_RunsWithTheStepFrameworkAndOrderer()
    {
        var assembly = typeof(StepLedgerTests).Assembly;
        var framework = assembly.GetCustomAttributesData().Single(a => a.AttributeType == typeof(TestFrameworkAttribute));
        var orderer = assembly.GetCustomAttributesData().Single(a => a.AttributeType == typeof(TestCaseOrdererAttribute));

        Assert.Equal(StepFramework.TypeName, framework.ConstructorArguments[0].Value);
        Assert.Equal(StepOrderer.TypeName, orderer.ConstructorArguments[0].Value);
    }
}
